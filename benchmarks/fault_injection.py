"""Fault-injection benchmark: the whole catalogue of bad inputs plus the crash, disk-full,
concurrency and staleness scenarios, summarised in one table.

Every bad input is made from a good recording at run time (:mod:`eeg_assets.fault_injection`):

* the catalogue (EDF, annotation and drop faults) is laid out in ONE split beside good recordings
  and built once by ``python -m eeg_assets build-cache`` (2 workers) and once by the
  ``npz_windows`` asset (``dg.materialize``); each input must get its expected outcome and reason
  in the CLI summary, the ledger and the Dagster ``quarantined`` metadata table;
* scenarios: a file still being copied (drop-sensor ticks), recordings deleted or damaged after
  they were cached, changes behind the manifest's back, ``build-cache`` killed with SIGKILL at
  seeded random points (then rerun and compared with an uninterrupted build), a full disk
  (file-size limit) on a first build and during a rebuild (the previous NPZ kept; build-cache
  and the ``npz_windows`` step), and two builds of the same split at once;
* issue 21: an EDF or annotation moved away during a build and back (retried, not
  quarantined), the build ledger truncated to 0 bytes, deleted or truncated to 8 KB (nothing
  deleted; ``adopt-cache`` takes the NPZs back), ``manifest.json`` edited or
  ``_dataset_index.json`` deleted and the next step materialized alone (refused), NPZ bytes
  changed with size and mtime kept (``verify-cache --all``, ``scan-cache``). What is not played
  (an unreadable folder: these machines run as root) is listed after the per-case details.

Columns: inputs tried; inputs rejected with the expected reason (of those that must be rejected);
good files built (of those that must be); files lost (good files missing at the end); half-written
files left (temporary files, or files under a final name that do not load); stale manifests
undetected. A per-case detail list follows the table; the exit status is 1 when any case failed.

Run by hand: ``python benchmarks/fault_injection.py [--seeds 1 2 3 4 5] [--dir /tmp] [--keep]``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from eeg_assets import fault_injection as faults
from eeg_assets.fault_injection import BUILT, IGNORED, QUARANTINED, ScenarioResult
from eeg_assets.fault_injection.checks import cli_line


def catalogue_results(work: Path, with_dagster: bool) -> tuple[list[ScenarioResult], list[str]]:
    """One row per catalogue group plus the good recordings, and the per-case detail lines."""
    template = faults.write_template(work / "template")
    catalogue = faults.lay_out_catalogue(work / "raw" / "train", work / "outside", template)
    cache = work / "cache_cli" / "train"
    proc = faults.run_build_cache(catalogue.split_dir, cache, workers=2)
    facts = faults.ledger_facts(cache)
    good = facts.get("good-00/s001_2015/01_tcp_ar/good-00_s001_t000.edf")
    reference = (good[1], good[2]) if good and good[0] == BUILT else None
    rows, warning_rows, dagster_cache = None, None, None
    if with_dagster:
        result = faults.materialize_npz_windows(work / "raw", work / "cache_dagster",
                                                work / "results", log_level="ERROR")
        rows = faults.metadata_rows_of(result) if result.success else []
        warning_rows = faults.warning_rows_of(result) if result.success else []
        dagster_cache = work / "cache_dagster" / "train"

    groups: dict[str, ScenarioResult] = {}
    details = []
    for case, source in catalogue.cases:
        row = groups.setdefault(case.group, ScenarioResult(f"catalogue: {case.group} faults",
                                                           case.group))
        problems = faults.check_case(case, source, cache, cli_output=proc.stdout,
                                     reference=reference)
        if dagster_cache is not None and case.outcome != IGNORED:
            problems += [f"dagster: {p}" for p in faults.check_case(
                case, source, dagster_cache, metadata_rows=rows, reference=reference,
                warning_rows=warning_rows)]
        row.inputs += 1
        if case.outcome in (QUARANTINED, IGNORED):
            row.rejections_expected += 1
            row.rejected_as_expected += not problems
        else:
            row.good_expected += 1
            built = facts.get(source, (None,))[0] == BUILT
            row.good_built += built
            row.files_lost += not built
        row.problems += [f"{case.name}: {p}" for p in problems]
        reason = facts.get(source, ("", 0, [], "", ""))[4] if case.outcome != IGNORED else next(
            (line for line in proc.stdout.splitlines() if line.startswith(f"  ignored: {source}")),
            "(not reported)").strip()
        shown = reason if case.outcome != BUILT else f"built ({facts.get(source, ('?',))[0]})"
        if case.outcome == BUILT and case.warnings:
            line = cli_line(proc.stdout, "built with warnings", source)
            shown += f", {line.strip() if line else 'no built-with-warnings line'}"
        details.append(f"[{'ok' if not problems else 'FAIL'}] {case.group:10s} {case.name:26s} "
                       f"{case.description}\n        -> {shown}"
                       + "".join(f"\n        !! {p}" for p in problems))

    good_row = ScenarioResult("catalogue: good recordings in the same split", "good")
    good_row.inputs = good_row.good_expected = len(catalogue.good_sources)
    for cache_dir in [cache] + ([dagster_cache] if dagster_cache else []):
        built_now = faults.ledger_facts(cache_dir)
        ok = [s for s in catalogue.good_sources if built_now.get(s, (None,))[0] == BUILT]
        if cache_dir == cache:
            good_row.good_built = len(ok)
            good_row.files_lost = len(catalogue.good_sources) - len(ok)
        elif len(ok) != len(catalogue.good_sources):
            good_row.problems.append(f"dagster built {len(ok)}/{len(catalogue.good_sources)}")
        half = faults.temporary_files(cache_dir) + faults.untrustworthy_files(cache_dir)
        good_row.half_written += len(half)
        if half:
            good_row.problems.append(f"{cache_dir}: left {half}")
    if proc.returncode != 0:
        good_row.problems.append(f"build-cache exited {proc.returncode}")
    index_reason, manifest_reason = faults.staleness(cache)
    if index_reason or manifest_reason:
        good_row.problems.append(f"stale after build-cache: {index_reason or manifest_reason}")
    good_row.detail = (f"build-cache exit {proc.returncode}; "
                       f"{'dagster materialization checked' if with_dagster else 'no dagster'}")
    return [*groups.values(), good_row], details


def scenario_results(work: Path, seeds: list[int], with_dagster: bool = True
                     ) -> list[ScenarioResult]:
    template = faults.write_template(work / "template2")
    results = [faults.settling_scenario(work / "settling", template),
               faults.drops_after_caching_scenario(work / "drops", template)]
    small_data, small_cache = work / "small_data", work / "small_cache"
    faults.write_corpus(small_data, n=3, duration_s=80, with_bad=False)
    faults.build_reference(small_data, small_cache)
    results.append(faults.stale_manifest_scenario(work / "stale", small_cache))
    data, reference = work / "crash_data", work / "crash_reference"
    faults.write_corpus(data)
    faults.build_reference(data, reference)
    for trigger in ("time", "progress"):
        for seed in seeds:
            results.append(faults.crash_scenario(work / "crash", data, reference, seed=seed,
                                                 trigger=trigger))
    for workers in (1, 2):
        results.append(faults.crash_scenario(work / "crash", data, reference, seed=0,
                                             workers=workers, trigger="mid-write"))
    results.append(faults.disk_full_scenario(work / "diskfull"))
    results.append(faults.rebuild_disk_full_scenario(work / "rebuild_diskfull",
                                                     with_dagster=with_dagster))
    results.append(faults.concurrency_scenario(work / "concurrency", data, reference,
                                               how="cli", rounds=2))
    results.append(faults.concurrency_scenario(work / "concurrency", data, reference,
                                               how="library", rounds=3))
    # issue 21: passing read errors, ledger damage, steps run alone, NPZ damage
    for what in ("edf", "annotation"):
        results.append(faults.moved_away_scenario(work / f"moved_{what}", template, what))
    for how in faults.LEDGER_CASES:
        results.append(faults.ledger_scenario(work / "ledger", small_data, small_cache, how))
    if with_dagster:
        results += faults.step_alone_scenarios(work / "step_alone", data, reference)
    results.append(faults.npz_damage_scenario(work / "npz_damage", reference))
    return results


def _ratio(done: int, expected: int) -> str:
    return f"{done}/{expected}" if expected else "-"


def table(rows: list[ScenarioResult]) -> str:
    header = ("", "inputs tried", "rejected w/ expected reason", "good files built",
              "files lost", "half-written left", "stale manifests undetected", "")
    lines = [[r.name, str(r.inputs), _ratio(r.rejected_as_expected, r.rejections_expected),
              _ratio(r.good_built, r.good_expected), str(r.files_lost), str(r.half_written),
              _ratio(r.stale_undetected, r.stale_expected) if r.stale_expected else "0",
              "ok" if r.ok else "FAIL"] for r in rows]
    total = ScenarioResult("TOTAL", "")
    for r in rows:
        for name in ("inputs", "rejections_expected", "rejected_as_expected", "good_expected",
                     "good_built", "files_lost", "half_written", "stale_expected",
                     "stale_undetected"):
            setattr(total, name, getattr(total, name) + getattr(r, name))
    failed = sum(not r.ok for r in rows)
    lines.append([total.name, str(total.inputs),
                  _ratio(total.rejected_as_expected, total.rejections_expected),
                  _ratio(total.good_built, total.good_expected), str(total.files_lost),
                  str(total.half_written),
                  _ratio(total.stale_undetected, total.stale_expected),
                  "ok" if not failed else f"{failed} FAIL"])
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]

    def fmt(row):
        return "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(row, widths))) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([fmt(header), rule, *map(fmt, lines[:-1]), rule, fmt(lines[-1])])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5],
                        help="seeds of the SIGKILL points (each seed: one kill 0.3-3.0 s after "
                             "the start, one at a random point of the build)")
    parser.add_argument("--dir", default=None, help="parent of the temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--no-dagster", action="store_true",
                        help="skip the Dagster runs (the npz_windows asset, steps run alone)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="eeg_fault_injection_", dir=args.dir))
    started = time.monotonic()
    try:
        rows, details = catalogue_results(work / "catalogue", with_dagster=not args.no_dagster)
        scenarios = scenario_results(work / "scenarios", args.seeds,
                                     with_dagster=not args.no_dagster)
        rows += scenarios
        print(f"\nfault injection: {time.monotonic() - started:.0f} s, working folder {work} "
              "($WORK below)\n")
        print(table(rows))
        print("\nper case:")

        def short(text: str) -> str:
            return text.replace(str(work), "$WORK")

        for line in details:
            print(short(line))
        for r in scenarios:
            print(short(f"[{'ok' if r.ok else 'FAIL'}] {r.group:10s} {r.name}\n        -> "
                        f"{r.detail}" + "".join(f"\n        !! {p}" for p in r.problems)))
        for r in rows:
            if r.group == "good" and r.problems:
                print("".join(f"!! good recordings: {p}\n" for p in r.problems), end="")
        print("\nnot played:")
        for line in faults.NOT_PLAYED:
            print(f"  - {line}")
        return 0 if all(r.ok for r in rows) else 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
