"""Scenarios of issue 21: faults the operating system causes, and damage done behind the build's
back. Each returns a :class:`~eeg_assets.fault_injection.runs.ScenarioResult`.

* a recording's EDF, or its annotation, moved away while a build runs (the listing is taken
  before the move, as a walk that saw the file would), then moved back: ``failed, will retry``
  with the OS's reason, not quarantined, and built by the next run (:func:`moved_away_scenario`);
* the build ledger truncated to 0 bytes, deleted, or truncated to 8 KB: the build refuses with a
  message saying what to do, deletes nothing, and ``adopt-cache`` takes the NPZs back so that
  the next build skips them all (:func:`ledger_scenario`);
* ``manifest.json`` edited (mtime kept) then ``balanced_dataset`` run alone, and
  ``_dataset_index.json`` deleted then ``manifest`` run alone: each step refuses its upstream
  file and names the step to materialize first (:func:`step_alone_scenario`);
* NPZ bytes changed with size and mtime kept: ``verify-cache --all`` names each damaged file and
  ``scan-cache`` takes no labels from a file whose labels fail their CRC-32
  (:func:`npz_damage_scenario`).

Not played (:data:`NOT_PLAYED`): an unreadable folder or file. ``chmod 000`` does not stop root,
and these machines run as root, so the walk would read it anyway; moving a file away (above) is
the passing read error that can be played.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from eeg_assets.lib.cache.ledger import BUILT, FAILED, LEDGER_NAME, Ledger
from eeg_assets.lib.cache.npzio import locate_member
from eeg_assets.lib.dataset.index import INDEX_NAME
from eeg_assets.lib.dataset.manifest import MANIFEST_NAME, read_manifest
from eeg_assets.fault_injection.catalogue import CaseContext, Template
from eeg_assets.fault_injection.checks import (
    cli_line, ledger_facts, missing_reasons, staleness, temporary_files, untrustworthy_files,
)
from eeg_assets.fault_injection.runs import (
    PACKAGE_PARENT, ScenarioResult, cli_env, materialize_chain, run_build_cache,
    step_failure_message,
)

#: Faults of the issue that these scenarios do not play, and why (the benchmark prints them).
NOT_PLAYED = (
    "an unreadable folder or file (chmod 000): not played as root, who reads it anyway; "
    "a file moved away during a build plays the passing read error instead",
    "ENOSPC from a real full file system: needs a mount; the file-size limit (EFBIG) takes the "
    "same path in the writer",
)



def _require_clean(result: ScenarioResult, cache: Path, after: str) -> None:
    """No temporary or untrustworthy file left, and an index and manifest that are current."""
    half = temporary_files(cache) + untrustworthy_files(cache)
    result.half_written = len(half)
    if half:
        result.problems.append(f"left {half}")
    index_reason, manifest_reason = staleness(cache)
    if index_reason or manifest_reason:
        result.problems.append(f"stale after {after}: {index_reason or manifest_reason}")

def run_cli(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m eeg_assets <args>`` in a subprocess."""
    return subprocess.run([sys.executable, "-m", "eeg_assets", *map(str, args)],
                          capture_output=True, text=True, env=cli_env(), cwd=PACKAGE_PARENT,
                          timeout=timeout)


def npz_bytes(cache: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(Path(cache).glob("*_windows.npz"))}


def _error_line(proc: subprocess.CompletedProcess) -> str | None:
    return next((x for x in proc.stderr.splitlines() if x.startswith("error: ")), None)


def _short(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


# ------------------------------------------------------------------------------------------------
# A passing read error is retried, not quarantined
# ------------------------------------------------------------------------------------------------

def moved_away_scenario(work_dir: Path, template: Template, what: str = "edf") -> ScenarioResult:
    """A recording's EDF (``what="edf"``) or ``.csv_bi`` (``what="annotation"``) is moved away
    after the walk listed it and before its build reads it, then moved back.

    The build (``build_split(..., listing=...)``, the listing taken before the move) must record it
    ``failed`` with ``<file>: cannot read: No such file or directory; tried again next run``,
    list it on a ``failed, will retry`` line of the summary, count it in ``failed, will retry 1``
    (not in ``quarantined``), and build the other recording; ``build-cache`` run once the file is
    back must build it, with the labels of an untouched copy.
    """
    from eeg_assets.lib.cache.build import build_split, format_report
    from eeg_assets.lib.cache.discovery import list_recordings

    label = "EDF" if what == "edf" else "annotation (.csv_bi)"
    result = ScenarioResult(f"{label} moved away during a build, back for the next run",
                            "read error", inputs=1, rejections_expected=1, good_expected=2)
    data, cache = Path(work_dir) / "data", Path(work_dir) / "cache"
    ctx = CaseContext(data, Path(work_dir) / "outside", template)
    keep, moved = ctx.place("keep"), ctx.place("moved")
    path = moved.edf if what == "edf" else moved.annotation
    aside = Path(work_dir) / f"aside{path.suffix}"
    listing = list_recordings(data)  # the walk saw it ...
    path.rename(aside)               # ... then it is moved away before the build reads it
    report = build_split(data, cache, "train", workers=1, progress=None, log=lambda line: None,
                         listing=listing)
    summary = format_report(report)
    facts = ledger_facts(cache)
    fact = facts.get(moved.source)
    reason = f"{path.name}: cannot read: No such file or directory; tried again next run"
    problems = []
    if fact is None or fact[0] != FAILED:
        problems.append(f"expected status failed, got {fact}")
    elif reason not in fact[4]:
        problems.append(f"ledger reason is not {reason!r}: {fact[4]!r}")
    line = cli_line(summary, "failed, will retry", moved.source)
    if missing := missing_reasons(line, (reason,)):
        problems.append(f"summary line '  failed, will retry: {moved.source}: ...' lacks "
                        f"{missing}: {line!r}")
    if "| quarantined 0 | failed, will retry 1 |" not in summary:
        problems.append(f"summary counts lack '| quarantined 0 | failed, will retry 1 |': "
                        f"{summary.splitlines()[1] if len(summary.splitlines()) > 1 else summary}")
    if facts.get(keep.source, (None,))[0] != BUILT:
        problems.append(f"the other recording was not built: {facts.get(keep.source)}")
    if not problems:
        result.rejected_as_expected = 1
    result.problems += problems
    aside.rename(path)  # back, same size and mtime
    rerun = run_build_cache(data, cache)
    facts = ledger_facts(cache)
    built = [s for s in (keep.source, moved.source) if facts.get(s, (None,))[0] == BUILT
             and (cache / facts[s][3]).is_file()]
    result.good_built, result.files_lost = len(built), 2 - len(built)
    if rerun.returncode != 0 or moved.source not in built or "built 1 " not in rerun.stdout:
        result.problems.append(f"rerun once the file was back (exit {rerun.returncode}) did not "
                               f"build it: {facts.get(moved.source)}")
    elif facts[moved.source][1:3] != facts[keep.source][1:3]:
        result.problems.append(f"built with other windows/labels than an untouched copy: "
                               f"{facts[moved.source][1:3]} vs {facts[keep.source][1:3]}")
    if cli_line(rerun.stdout, "failed, will retry", moved.source):
        result.problems.append("still 'failed, will retry' once the file was back")
    _require_clean(result, cache, "the rerun")
    result.detail = (f"{line.strip() if line else '(no failed line)'} | next run: exit "
                     f"{rerun.returncode}, {moved.source} "
                     f"{facts.get(moved.source, ('not in the ledger',))[0]}")
    return result


# ------------------------------------------------------------------------------------------------
# Ledger damage never deletes the cache
# ------------------------------------------------------------------------------------------------

#: how -> (row title, what is done to ``_ledger.sqlite``).
LEDGER_CASES = {
    "empty": "build ledger truncated to 0 bytes, then adopt-cache",
    "missing": "build ledger deleted, then adopt-cache",
    "damaged": "build ledger truncated to 8 KB (damaged), moved aside, then adopt-cache",
}


def ledger_scenario(work_dir: Path, data_dir: Path, built_cache: Path,
                    how: str = "empty") -> ScenarioResult:
    """A copy of ``built_cache`` (built from ``data_dir``) whose ledger is truncated to 0 bytes
    (``how="empty"``), deleted (``"missing"``) or truncated to 8 KB after a WAL checkpoint
    (``"damaged"``).

    ``build-cache`` must exit 1 without a traceback, with ``error: build ledger <path>: missing or
    empty, but <cache> holds N NPZ file(s). Nothing was deleted. Run `python -m eeg_assets
    adopt-cache ...`` (or, damaged, ``... database disk image is malformed: the file is damaged.
    Nothing was deleted. Move it aside (...)``, from ``verify-cache`` too), and delete nothing.
    Then (the damaged file moved aside as told) ``adopt-cache`` must print ``[adopt-cache]
    <cache>: adopted N, left to rebuild 0`` and the next ``build-cache`` skip all N, the NPZs
    unchanged byte for byte.
    """
    result = ScenarioResult(LEDGER_CASES[how], "ledger", inputs=1, rejections_expected=1)
    cache = Path(work_dir) / f"ledger_{how}"
    shutil.copytree(built_cache, cache)  # copy2: mtimes kept, so the ledger still applies
    ledger = cache / LEDGER_NAME
    with Ledger(cache) as held:  # checkpoint the WAL, so the file holds every page
        held.entries()
    for leftover in ("-wal", "-shm"):
        Path(f"{ledger}{leftover}").unlink(missing_ok=True)
    before = npz_bytes(cache)
    n = len(before)
    result.good_expected = n
    if how == "empty":
        ledger.write_bytes(b"")
    elif how == "missing":
        ledger.unlink()
    else:
        size = ledger.stat().st_size
        if size <= 8192:
            result.problems.append(f"the ledger is only {size} bytes: 8 KB would not damage it")
        with open(ledger, "r+b") as fh:
            fh.truncate(8192)
    if how == "damaged":
        expected = (f"error: build ledger {ledger}: database disk image is malformed: the file "
                    "is damaged. Nothing was deleted. Move it aside (", f"mv {ledger} ")
        commands = {"build-cache": ("build-cache", "--data-dir", data_dir, "--cache-dir", cache,
                                    "--split", "train", "--no-progress"),
                    "verify-cache": ("verify-cache", "--cache-dir", cache)}
    else:
        expected = (f"error: build ledger {ledger}: missing or empty, but {cache} holds {n} NPZ "
                    "file(s). Nothing was deleted. Run `python -m eeg_assets adopt-cache ",)
        commands = {"build-cache": ("build-cache", "--data-dir", data_dir, "--cache-dir", cache,
                                    "--split", "train", "--no-progress")}
    refusals = []
    refused_ok = True
    for name, command in commands.items():
        done = run_cli(*command)
        error = _error_line(done)
        refusals.append(f"{name}: exit {done.returncode}: {error}")
        problems = []
        if done.returncode != 1:
            problems.append(f"exited {done.returncode}, expected 1")
        if "Traceback" in done.stderr:
            problems.append(f"traceback: {done.stderr[-500:]}")
        if missing := missing_reasons(error, expected):
            problems.append(f"'error: ...' line lacks {missing}: {error!r}")
        if (after := npz_bytes(cache)) != before:
            lost = sorted(set(before) - set(after))
            problems.append(f"NPZs deleted or changed: {lost or 'changed'}")
        refused_ok &= not problems
        result.problems += [f"{name}: {p}" for p in problems]
    result.rejected_as_expected = int(refused_ok)
    if how == "damaged":
        ledger.rename(f"{ledger}.damaged")  # as the message says
    adopted = run_cli("adopt-cache", "--data-dir", data_dir, "--cache-dir", cache)
    adopt_line = adopted.stdout.strip().splitlines()[0] if adopted.stdout.strip() else ""
    if adopted.returncode != 0 or \
            f"[adopt-cache] {cache}: adopted {n}, left to rebuild 0" not in adopted.stdout:
        result.problems.append(f"adopt-cache (exit {adopted.returncode}): expected 'adopted {n}, "
                               f"left to rebuild 0': {_short(adopted.stdout + adopted.stderr)!r}")
    again = run_cli("build-cache", "--data-dir", data_dir, "--cache-dir", cache, "--split",
                    "train", "--no-progress")
    counts = again.stdout.splitlines()[1] if len(again.stdout.splitlines()) > 1 else ""
    if again.returncode != 0 or "built 0 (" not in counts or f"skipped {n} unchanged" not in counts:
        result.problems.append(f"build after adopt-cache (exit {again.returncode}) did not skip "
                               f"all {n}: {counts!r} {_short(again.stderr)!r}")
    after = npz_bytes(cache)
    kept = [name for name, data in before.items() if after.get(name) == data]
    result.good_built, result.files_lost = len(kept), n - len(kept)
    if len(kept) != n:
        result.problems.append(f"NPZs not kept byte for byte: {sorted(set(before) - set(kept))}")
    _require_clean(result, cache, "the build")
    result.detail = " | ".join(refusals + [adopt_line, f"next build: {counts.strip()}"])
    shutil.rmtree(cache, ignore_errors=True)
    return result


# ------------------------------------------------------------------------------------------------
# Steps run alone refuse stale or edited inputs
# ------------------------------------------------------------------------------------------------

#: case -> (row title, the step run alone, the refusal it must give, the file it must not write).
STEP_ALONE_CASES = {
    "manifest-edited": (
        "manifest.json edited (an entry moved to full_seizure, mtime kept), balanced_dataset "
        "run alone", "balanced_dataset",
        ("manifest.json is not what the cache's recorded facts give (",
         "materialize manifest[train] first"), "balanced_dataset.json"),
    "index-deleted": (
        "_dataset_index.json deleted, manifest run alone", "manifest",
        ("_dataset_index.json is not what the cache's recorded facts give (",
         "materialize dataset_index[train] first"), MANIFEST_NAME),
}


def step_alone_scenarios(work_dir: Path, data_dir: Path, built_cache: Path
                         ) -> list[ScenarioResult]:
    """With the chain materialized (``npz_windows`` ... ``balanced_dataset``, in process) on a
    copy of ``built_cache``: each case of :data:`STEP_ALONE_CASES` is done to a copy of the
    materialized split, then its step is materialized alone; it must fail with the refusal, and
    leave the file it would have written unchanged. Then the chain is materialized again and must
    succeed (the cure the refusal names)."""
    raw_root, cache_root = Path(work_dir) / "raw", Path(work_dir) / "cache"
    shutil.copytree(data_dir, raw_root / "train")
    shutil.copytree(built_cache, cache_root / "train")
    chain = materialize_chain(raw_root, cache_root, Path(work_dir) / "results", workers=1)
    results = []
    if not chain.success:
        failed = ScenarioResult("cache chain materialized for the steps-run-alone cases",
                                "step alone", inputs=1)
        failed.problems.append(f"the chain failed: {step_failure_message(chain)}")
        return [failed]
    materialized = cache_root / "train"
    for case, (title, step, expected, guarded) in STEP_ALONE_CASES.items():
        result = ScenarioResult(title, "step alone", inputs=1, rejections_expected=1,
                                stale_expected=1)
        case_root = Path(work_dir) / f"cache_{case}"
        cache = case_root / "train"
        shutil.copytree(materialized, cache)
        n_npz = len(list(cache.glob("*_windows.npz")))
        if case == "manifest-edited":
            path = cache / MANIFEST_NAME
            manifest = json.loads(path.read_text())
            if not manifest.get("no_seizure"):
                result.problems.append("the manifest has no no_seizure entry to move")
            else:
                manifest["full_seizure"].append(manifest["no_seizure"].pop())  # by hand
                st = path.stat()
                path.write_text(json.dumps(manifest))
                os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        else:
            (cache / INDEX_NAME).unlink()
        guarded_before = (cache / guarded).read_bytes() if (cache / guarded).exists() else None
        alone = materialize_chain(raw_root, case_root, Path(work_dir) / "results", [step],
                                  workers=1, log_level="CRITICAL")  # its failure is expected
        message = step_failure_message(alone)
        if alone.success:
            result.stale_undetected = 1
            result.problems.append(f"{step} run alone succeeded")
        elif missing := missing_reasons(message, expected):
            result.problems.append(f"{step} failed, but its message lacks {missing}: "
                                   f"{_short(message, 600)!r}")
        else:
            result.rejected_as_expected = 1
        guarded_after = (cache / guarded).read_bytes() if (cache / guarded).exists() else None
        if guarded_after != guarded_before:
            result.problems.append(f"{guarded} was rewritten by the refused step")
        cure = materialize_chain(raw_root, case_root, Path(work_dir) / "results", workers=1)
        if not cure.success:
            result.problems.append(f"materializing the chain afterwards failed: "
                                   f"{_short(step_failure_message(cure), 600)}")
        elif staleness(cache) != (None, None):
            result.problems.append(f"stale after the chain ran again: {staleness(cache)}")
        result.files_lost = n_npz - len(list(cache.glob("*_windows.npz")))
        half = temporary_files(cache) + untrustworthy_files(cache)
        result.half_written = len(half)
        if half:
            result.problems.append(f"left {half}")
        result.detail = (f"{step} alone: {'succeeded' if alone.success else _short(message, 300)}"
                         f" | chain again: {'ok' if cure.success else 'failed'}")
        results.append(result)
        shutil.rmtree(case_root, ignore_errors=True)
    return results


# ------------------------------------------------------------------------------------------------
# Verification checks every byte
# ------------------------------------------------------------------------------------------------

def _poke(path: Path, offset: int, data: bytes) -> None:
    """Overwrite bytes in place, the file's size and mtime kept."""
    st = path.stat()
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size


def _label_row(path: Path) -> tuple[int, int, np.ndarray]:
    """(data offset of the labels, bytes per row, the index of a row that is not all ones)."""
    located = locate_member(path, "labels")
    labels = np.memmap(path, dtype=located.dtype, mode="r", offset=located.data_offset,
                       shape=located.shape)
    row = next((i for i in range(len(labels) // 2, len(labels)) if not np.all(labels[i] == 1)),
               next(i for i in range(len(labels)) if not np.all(labels[i] == 1)))
    width = labels.shape[1] * labels.dtype.itemsize
    del labels
    return located.data_offset, width, row


#: damage -> what is done (each to its own NPZ, size and mtime kept).
NPZ_DAMAGE = {
    "windows-bytes": "the lowest byte of 64 samples of the middle window XOR-ed (values stay "
                     "finite and in range: only the CRC-32 can tell)",
    "label-row-ones": "a label row (not all seizure) set to 1.0 (still 0/1 values)",
    "label-row-half": "half a label row set to 0.5",
}


def npz_damage_scenario(work_dir: Path, built_cache: Path) -> ScenarioResult:
    """Three NPZs of a copy of ``built_cache`` damaged as :data:`NPZ_DAMAGE` says, each with its
    size and mtime kept (so the ledger's fingerprint still matches).

    ``verify-cache --all`` must exit non-zero and name each damaged file, and no other;
    ``scan-cache`` must take no labels from the files whose labels fail their CRC-32 (named in its
    output, absent from the manifest it writes).
    """
    result = ScenarioResult("NPZ bytes changed, size and mtime kept: verify-cache --all, "
                            "scan-cache", "npz damage", inputs=len(NPZ_DAMAGE),
                            rejections_expected=len(NPZ_DAMAGE))
    cache = Path(work_dir) / "npz_damage"
    shutil.copytree(built_cache, cache)
    files = sorted(cache.glob("*_windows.npz"))
    if len(files) < len(NPZ_DAMAGE) + 1:
        result.problems.append(f"need {len(NPZ_DAMAGE) + 1} NPZs, the cache has {len(files)}")
        return result
    damaged: dict[str, str] = {}
    for (damage, _what), path in zip(NPZ_DAMAGE.items(), files):
        if damage == "windows-bytes":
            located = locate_member(path, "windows")
            n, per_window = located.shape[0], int(np.prod(located.shape[1:])) * 4
            start = located.data_offset + (n // 2) * per_window
            with open(path, "rb") as fh:
                fh.seek(start)
                chunk = bytearray(fh.read(64 * 4 * 97))
            for i in range(0, len(chunk), 4 * 97):  # the low byte of every 97th sample
                chunk[i] ^= 0x01
            _poke(path, start, bytes(chunk))
        else:
            offset, width, row = _label_row(path)
            if damage == "label-row-ones":
                _poke(path, offset + row * width, np.ones(width // 4, np.float32).tobytes())
            else:
                _poke(path, offset + row * width, np.full(width // 8, 0.5, np.float32).tobytes())
        damaged[path.name] = damage
    intact = [p.name for p in files if p.name not in damaged]
    verify = run_cli("verify-cache", "--cache-dir", cache, "--all")
    error = _error_line(verify) or ""
    named = {name for name in damaged if name in error}
    if verify.returncode == 0:
        result.problems.append(f"verify-cache --all exited 0: {_short(verify.stdout)!r}")
    for name, damage in damaged.items():
        problem_lines = [x for x in verify.stdout.splitlines() if name in x]
        if verify.returncode != 0 and name in named and problem_lines:
            result.rejected_as_expected += 1
        else:
            result.problems.append(f"verify-cache --all does not name {name} ({damage}): "
                                   f"{error!r}")
    if wrongly := [name for name in intact if name in error]:
        result.problems.append(f"verify-cache --all names undamaged files: {wrongly}")
    if "Traceback" in verify.stderr:
        result.problems.append(f"verify-cache traceback: {verify.stderr[-500:]}")
    scan = run_cli("scan-cache", "--cache-dir", cache)
    label_damaged = [name for name, damage in damaged.items() if damage.startswith("label")]
    scan_text = scan.stdout + scan.stderr
    if scan.returncode == 0:
        result.problems.append("scan-cache exited 0 with damaged labels")
    if "Traceback" in scan.stderr:
        result.problems.append(f"scan-cache traceback: {scan.stderr[-500:]}")
    if unnamed := [name for name in label_damaged if name not in scan_text]:
        result.problems.append(f"scan-cache does not name {unnamed}: {_short(scan_text)!r}")
    try:
        in_manifest = {e["cache_file"] for entries in read_manifest(cache).values()
                       for e in entries}
    except Exception as exc:  # noqa: BLE001 - reported
        in_manifest = set()
        result.problems.append(f"manifest.json unreadable after scan-cache: {exc}")
    if taken := sorted(set(label_damaged) & in_manifest):
        result.problems.append(f"scan-cache took the labels of {taken} (their CRC-32 fails)")
    windows_only = [name for name, damage in damaged.items() if damage == "windows-bytes"]
    result.files_lost = len([p for p in files if not p.exists()])
    half = temporary_files(cache)
    result.half_written = len(half)
    if half:
        result.problems.append(f"left {half}")
    scan_named = [x.strip() for x in scan.stderr.splitlines() if x.startswith("  ")]
    problems_named = [
        f"{damage}: " + _short(next((x.strip() for x in verify.stdout.splitlines()
                                     if name in x and "problem" in x), "(no problem line)"), 240)
        for name, damage in damaged.items()]
    result.detail = (f"verify-cache --all: exit {verify.returncode}: {error} | "
                     + " | ".join(problems_named)
                     + f" | scan-cache: exit {scan.returncode}, took no labels from: "
                     + "; ".join(scan_named)
                     + f" | labels of the windows-only damaged file {windows_only} "
                     f"{'taken' if set(windows_only) & in_manifest else 'not taken'} by scan-cache "
                     "(its labels member passes its CRC-32)")
    shutil.rmtree(cache, ignore_errors=True)
    return result
