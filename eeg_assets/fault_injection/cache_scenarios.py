"""Scenarios around a built cache: recordings deleted or damaged after they were cached, changes
made behind the manifest's back, and a file still being copied as the drop sensor sees it."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from eeg_assets.lib.cache.ledger import BUILT
from eeg_assets.lib.cache.npzio import write_npz
from eeg_assets.lib.config import CacheConfig
from eeg_assets.lib.dataset.index import index_staleness, read_index
from eeg_assets.lib.dataset.manifest import MANIFEST_NAME, manifest_staleness, read_manifest
from eeg_assets.synthetic.edf_writer import tusz_dir
from eeg_assets.fault_injection.catalogue import CaseContext, Template
from eeg_assets.fault_injection.checks import (
    cli_line, ledger_facts, missing_reasons, staleness, temporary_files, untrustworthy_files,
)
from eeg_assets.fault_injection.edf_surgery import EdfLayout, truncate
from eeg_assets.fault_injection.runs import ScenarioResult, run_build_cache


def drops_after_caching_scenario(work_dir: Path, template: Template) -> ScenarioResult:
    """A split is built, then: one recording deleted, one annotation deleted, one EDF replaced by
    a truncated copy (a half-finished overwrite), one half-copied EDF dropped. The rerun removes
    or quarantines each with its reason and drops its NPZ from the index and the manifest; the
    half-copied file, once its copy completes, is built on the next run."""
    result = ScenarioResult("recordings deleted / damaged after they were cached", "drop",
                            inputs=4, rejections_expected=4)
    data, cache = Path(work_dir) / "drops_data", Path(work_dir) / "drops_cache"
    ctx = CaseContext(data, Path(work_dir) / "drops_outside", template)
    placed = {name: ctx.place(name) for name in ("keep", "deleted", "annotationgone", "damaged")}
    first = run_build_cache(data, cache)
    if first.returncode != 0:
        result.problems.append(f"first build exited {first.returncode}: {first.stderr[-300:]}")
    placed["deleted"].edf.unlink()
    placed["deleted"].annotation.unlink()
    placed["annotationgone"].annotation.unlink()
    layout = EdfLayout.read(placed["damaged"].edf)
    truncate(placed["damaged"].edf, layout.header_bytes + 10 * layout.record_bytes)
    copying = ctx.place("copying")  # dropped while its copy is still running: half the bytes
    full_copy = copying.edf.read_bytes()
    truncate(copying.edf, len(full_copy) // 2)
    second = run_build_cache(data, cache)
    out = second.stdout
    lines = out.splitlines()

    def quarantined_for(source: str, reason: str) -> bool:
        return not missing_reasons(cli_line(out, "quarantined", source), (reason,))

    expectations = [
        ("deleted", "removed (EDF gone)",
         f"  removed (EDF gone): {placed['deleted'].source}" in lines),
        ("annotationgone", "no annotation file",
         quarantined_for(placed["annotationgone"].source, "no annotation file")),
        ("damaged", "only 10 complete records are present",
         quarantined_for(placed["damaged"].source, "only 10 complete records are present")),
        ("copying", "shorter than its header declares",
         quarantined_for(copying.source, "shorter than its header declares")),
    ]
    for name, reason, ok in expectations:
        if ok:
            result.rejected_as_expected += 1
        else:
            result.problems.append(f"{name}: CLI output lacks {reason!r}")
    facts = ledger_facts(cache)
    if placed["deleted"].source in facts:
        result.problems.append("ledger still has the deleted recording")
    gone = {f"{name}_s001_t000_windows.npz" for name in ("deleted", "annotationgone", "damaged")}
    on_disk = {p.name for p in cache.glob("*_windows.npz")}
    if on_disk & gone:
        result.problems.append(f"NPZs of removed/rejected recordings still on disk: "
                               f"{sorted(on_disk & gone)}")
    try:
        referenced = set(read_index(cache).files) | {
            e["cache_file"] for entries in read_manifest(cache).values() for e in entries}
        if referenced & gone:
            result.problems.append(f"index/manifest still reference {sorted(referenced & gone)}")
    except Exception as exc:  # noqa: BLE001
        result.problems.append(f"index/manifest unreadable: {exc}")
    index_reason, manifest_reason = staleness(cache)
    if index_reason or manifest_reason:
        result.problems.append(f"stale after the rerun: {index_reason or manifest_reason}")
    copying.edf.write_bytes(full_copy)  # the copy completes: a new fingerprint, so it is retried
    third = run_build_cache(data, cache)
    facts = ledger_facts(cache)
    built = [s for s in (placed["keep"].source, copying.source)
             if facts.get(s, (None,))[0] == BUILT]
    result.good_expected, result.good_built = 2, len(built)
    result.files_lost = 2 - len(built)
    if len(built) != 2:
        result.problems.append(f"after the copy completed (exit {third.returncode}): "
                               f"{ {s: facts.get(s, (None,))[0] for s in facts} }")
    half = temporary_files(cache) + untrustworthy_files(cache)
    result.half_written = len(half)
    if half:
        result.problems.append(f"left {half}")
    result.detail = "; ".join(line for line in out.splitlines() if line.startswith("  "))
    return result


def _rewrite_npz(path: Path, *, labels: Callable[[np.ndarray], np.ndarray] | None = None,
                 keep: int | None = None) -> None:
    with np.load(path) as data:
        windows, label_rows = data["windows"].copy(), data["labels"].copy()
    if keep is not None:
        windows, label_rows = windows[:keep], label_rows[:keep]
    if labels is not None:
        label_rows = labels(label_rows)
    time.sleep(0.01)  # a later mtime even on coarse-clock file systems
    write_npz(path, windows=windows, labels=label_rows)


#: name -> (what is done behind the manifest's back, the reason substring it must give).
STALE_CASES: dict[str, tuple[str, str]] = {
    "npz-added": ("a foreign NPZ copied into the split", "extra NPZ"),
    "npz-removed": ("an NPZ deleted", "missing NPZ"),
    "npz-rebuilt-labels": ("an NPZ rewritten with every label set to seizure", "changed NPZ"),
    "npz-rebuilt-fewer-windows": ("an NPZ rewritten with its last window dropped", "changed NPZ"),
    "manifest-truncated": ("manifest.json cut in half (a half-written file)",
                           "corrupt manifest.json"),
    "manifest-deleted": ("manifest.json deleted", "missing manifest.json"),
    "manifest-emptied": ("manifest.json replaced by empty categories", "empty manifest.json"),
    "config-changed": ("the notch frequency changed to 50 Hz", "config change"),
}


def stale_manifest_scenario(work_dir: Path, built_cache: Path) -> ScenarioResult:
    """Each change made behind the manifest's back must make ``manifest_staleness`` give a reason;
    an untouched split, and an NPZ rewritten with identical content, must not."""
    result = ScenarioResult("changes behind the manifest's back", "stale manifest",
                            inputs=len(STALE_CASES) + 2, stale_expected=len(STALE_CASES))
    details = []
    for name, (what, expected) in STALE_CASES.items():
        cache = Path(work_dir) / f"stale_{name}"
        shutil.copytree(built_cache, cache)  # copy2: mtimes kept, so the ledger still applies
        first = sorted(cache.glob("*_windows.npz"))[0]
        config = None
        if name == "npz-added":
            shutil.copy2(first, cache / "zzforeign_s001_t000_windows.npz")
        elif name == "npz-removed":
            first.unlink()
        elif name == "npz-rebuilt-labels":
            _rewrite_npz(first, labels=np.ones_like)
        elif name == "npz-rebuilt-fewer-windows":
            _rewrite_npz(first, keep=-1)
        elif name == "manifest-truncated":
            data = (cache / MANIFEST_NAME).read_bytes()
            (cache / MANIFEST_NAME).write_bytes(data[:len(data) // 2])
        elif name == "manifest-deleted":
            (cache / MANIFEST_NAME).unlink()
        elif name == "manifest-emptied":
            (cache / MANIFEST_NAME).write_text(
                '{"partial_seizure":[],"full_seizure":[],"no_seizure":[]}\n')
        elif name == "config-changed":
            config = CacheConfig(notch_hz=50.0)
        reason = manifest_staleness(cache, config) if config else manifest_staleness(cache)
        if reason is None:
            result.stale_undetected += 1
            result.problems.append(f"{name} ({what}): manifest_staleness says current")
        elif expected not in reason:
            result.problems.append(f"{name}: reason lacks {expected!r}: {reason!r}")
        details.append(f"{name}: {reason}")
        shutil.rmtree(cache, ignore_errors=True)
    # Controls: nothing changed; an NPZ rebuilt with identical content (the manifest is still
    # right, the index records the new fingerprint as a change).
    cache = Path(work_dir) / "stale_controls"
    shutil.copytree(built_cache, cache)
    if (reason := manifest_staleness(cache)) is not None:
        result.problems.append(f"untouched split reported stale: {reason}")
    _rewrite_npz(sorted(cache.glob("*_windows.npz"))[0])
    if (reason := manifest_staleness(cache)) is not None:
        result.problems.append(f"identical rebuild reported stale manifest: {reason}")
    if "changed NPZ" not in (index_staleness(cache) or ""):
        result.problems.append("identical rebuild: index_staleness misses the new fingerprint")
    shutil.rmtree(cache, ignore_errors=True)
    result.detail = " | ".join(details)
    return result


def settling_scenario(work_dir: Path, template: Template) -> ScenarioResult:
    """The drop sensor's view of a file still being copied: ``list_recordings`` + ``settled``
    leave it for a later tick until its size and mtime hold still and its annotation exists; an
    EDF without annotation keeps waiting; a symlink out of the raw root is never observed."""
    from eeg_assets.lib.cache.discovery import list_recordings
    from eeg_assets.orchestration.sensors import settled  # loads Dagster

    result = ScenarioResult("a file still being copied (drop sensor ticks)", "drop", inputs=3)
    raw = Path(work_dir) / "settling_raw"
    folder = tusz_dir(raw, "arriving")
    folder.mkdir(parents=True)
    edf = folder / "arriving_s001_t000.edf"
    full = template.edf.read_bytes()
    edf.write_bytes(full[:len(full) // 3])                     # tick 1: a third copied
    lonely = folder / "lonely_s001_t000.edf"                    # EDF whose annotation never comes
    shutil.copyfile(template.edf, lonely)
    outside = Path(work_dir) / "settling_outside"
    outside.mkdir()
    shutil.copyfile(template.edf, outside / "x.edf")
    (folder / "link_s001_t000.edf").symlink_to(outside / "x.edf")
    ticks = []
    previous: dict = {}
    for step in range(4):
        if step == 1:
            with open(edf, "ab") as fh:                           # tick 2: copy goes on
                fh.write(full[len(full) // 3:2 * len(full) // 3])
        elif step == 2:
            with open(edf, "ab") as fh:                           # tick 3: copy done, no csv_bi
                fh.write(full[2 * len(full) // 3:])
        elif step == 3:
            shutil.copyfile(template.annotation, edf.with_suffix(".csv_bi"))
        current = list_recordings(raw).inputs()
        ready, waiting = settled(current, previous)
        ticks.append((sorted(ready), sorted(waiting)))
        previous = current
    arriving, lonely_src = (p.relative_to(raw).as_posix() for p in (edf, lonely))
    if any("link_" in name for tick in ticks for name in tick[0] + tick[1]):
        result.problems.append("the symlink out of the raw root was observed")
    if any(arriving in tick[0] for tick in ticks[:4]):
        result.problems.append(f"the arriving file was ready before it settled: {ticks}")
    # tick 4 adds the annotation (a change), so the file is ready only at tick 5
    current = list_recordings(raw).inputs()
    ready, waiting = settled(current, previous)
    if arriving not in ready:
        result.problems.append(f"the settled file was never ready: {sorted(ready)}")
    if lonely_src in ready or lonely_src not in waiting:
        result.problems.append("an EDF without annotation was treated as ready")
    result.rejections_expected = 3
    result.rejected_as_expected = 3 - len(result.problems)
    result.detail = (f"ready at ticks: {[len(t[0]) for t in ticks] + [len(ready)]}, "
                     f"waiting: {[len(t[1]) for t in ticks] + [len(waiting)]}")
    return result
