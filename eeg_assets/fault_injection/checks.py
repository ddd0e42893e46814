"""Checking how the platform handled each input: the three places a reason must appear (ledger,
build-cache summary, Dagster metadata table) and the state a cache folder was left in."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from eeg_assets.lib.cache.ledger import BUILT, FAILED, Ledger
from eeg_assets.lib.dataset.index import index_staleness, read_index
from eeg_assets.lib.dataset.manifest import manifest_staleness
from eeg_assets.fault_injection.catalogue import IGNORED, FaultCase


def ledger_facts(cache_dir: Path) -> dict[str, tuple]:
    """Per source: (status, n_windows, seizure_samples, npz_name, reason)."""
    return {source: (e.status, e.n_windows, list(e.seizure_samples), e.npz_name, e.reason)
            for source, e in Ledger(cache_dir).entries().items()}


def cli_line(cli_output: str, label: str, source: str) -> str | None:
    """The summary line ``  <label>: <source>: <reason>`` of the build-cache output."""
    prefix = f"  {label}: {source}: "
    return next((line for line in cli_output.splitlines() if line.startswith(prefix)), None)


def missing_reasons(text: str | None, reasons: tuple[str, ...]) -> list[str]:
    return [r for r in reasons if text is None or r not in text]


def check_case(case: FaultCase, source: str, cache_dir: Path, *, cli_output: str | None = None,
               metadata_rows: list[dict] | None = None, reference: tuple | None = None,
               warning_rows: list[dict] | None = None) -> list[str]:
    """Problems with how one case was handled (empty list: handled as its catalogue entry says).

    ``cli_output`` is the build-cache output, ``metadata_rows`` the ``quarantined`` table and
    ``warning_rows`` the ``warnings`` table of the npz_windows materialization, ``reference`` the
    ledger facts of an untouched good copy (a BUILT case must give the same windows and labels,
    unless it names its own ``seizure_samples``).
    """
    problems: list[str] = []
    entries = Ledger(cache_dir).entries()
    entry = entries.get(source)
    if case.outcome == IGNORED:
        if entry is not None:
            problems.append(f"ledger has an entry for the ignored {source} ({entry.status})")
        if cli_output is not None:
            line = cli_line(cli_output, "ignored", source)
            if missing := missing_reasons(line, case.reasons):
                problems.append(f"CLI output line 'ignored: {source}: ...' lacks {missing}: "
                                f"{line!r}")
        return problems
    if entry is None:
        return [f"no ledger entry for {source}"]
    if case.outcome == BUILT:
        if entry.status != BUILT:
            return [f"expected built, got {entry.status}: {entry.reason}"]
        if not (cache_dir / entry.npz_name).is_file():
            problems.append(f"built but {entry.npz_name} is missing")
        if case.seizure_samples is not None:
            reference = (len(case.seizure_samples), list(case.seizure_samples))
        if reference is not None and (entry.n_windows, list(entry.seizure_samples)) != reference:
            problems.append(f"built with n_windows={entry.n_windows}, seizure samples "
                            f"{entry.seizure_samples}; expected {reference}")
        problems += _warning_problems(case, source, entry.warnings, cli_output, warning_rows)
        for key, text in case.details:
            if text not in str(entry.details.get(key, "")):
                problems.append(f"details[{key!r}] lacks {text!r}: {entry.details.get(key)!r}")
        if cli_output is not None and cli_line(cli_output, "quarantined", source):
            problems.append("listed as quarantined in the CLI output")
        if metadata_rows is not None and any(r["recording"] == source for r in metadata_rows):
            problems.append("listed in the npz_windows 'not_built' metadata table")
        return problems
    # QUARANTINED (or FAILED): the reason in the ledger, the CLI summary and the metadata table
    if entry.status != case.outcome:
        problems.append(f"expected {case.outcome}, got {entry.status}: {entry.reason}")
    if missing := missing_reasons(entry.reason, case.reasons):
        problems.append(f"ledger reason lacks {missing}: {entry.reason!r}")
    if entry.npz_name or any(e.npz_name == f"{entry.stem}_windows.npz" and s == source
                             for s, e in entries.items()):
        problems.append(f"a rejected input has an NPZ: {entry.npz_name}")
    if cli_output is not None:
        label = "failed, will retry" if case.outcome == FAILED else "quarantined"
        line = cli_line(cli_output, label, source)
        if missing := missing_reasons(line, case.reasons):
            problems.append(f"CLI output line '  {label}: {source}: ...' lacks {missing}: "
                            f"{line!r}")
    if metadata_rows is not None:
        row = next((r for r in metadata_rows if r["recording"] == source), None)
        if row is None:
            problems.append(f"{source} is not in the npz_windows 'not_built' metadata table")
        else:
            if row["status"] != case.outcome:
                problems.append(f"metadata table status {row['status']!r}")
            if missing := missing_reasons(row["reason"], case.reasons):
                problems.append(f"metadata table reason lacks {missing}: {row['reason']!r}")
    return problems



def temporary_files(cache_dir: Path) -> list[str]:
    return sorted(p.name for p in Path(cache_dir).glob(".*.tmp"))


def untrustworthy_files(cache_dir: Path) -> list[str]:
    """Files under a final name that a later step would read but that are incomplete: an NPZ that
    does not load completely, an index or manifest that is not valid JSON."""
    bad = []
    for npz in sorted(Path(cache_dir).glob("*_windows.npz")):
        try:
            with np.load(npz) as data:
                windows, labels = data["windows"], data["labels"]
                if windows.shape[0] != labels.shape[0] or windows.shape[0] == 0:
                    bad.append(f"{npz.name}: {windows.shape} windows, {labels.shape} labels")
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            bad.append(f"{npz.name}: {type(exc).__name__}: {exc}")
    for name in ("_dataset_index.json", "manifest.json", "balanced_dataset.json"):
        path = Path(cache_dir) / name
        if path.exists():
            try:
                json.loads(path.read_bytes())
            except ValueError as exc:
                bad.append(f"{name}: {exc}")
    return bad


def npz_arrays(cache_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for path in sorted(Path(cache_dir).glob("*_windows.npz")):
        with np.load(path) as data:
            out[path.name] = (data["windows"].copy(), data["labels"].copy())
    return out


def staleness(cache_dir: Path) -> tuple[str | None, str | None]:
    """``(index_staleness, manifest_staleness)`` of a split."""
    return index_staleness(cache_dir), manifest_staleness(cache_dir)


def compare_with_reference(cache_dir: Path, reference_dir: Path) -> tuple[list[str], int]:
    """Problems of ``cache_dir`` against an uninterrupted build, and the number of NPZs lost."""
    problems = []
    ours, theirs = npz_arrays(cache_dir), npz_arrays(reference_dir)
    lost = sorted(set(theirs) - set(ours))
    if lost:
        problems.append(f"NPZs lost: {lost}")
    if extra := sorted(set(ours) - set(theirs)):
        problems.append(f"NPZs not in the uninterrupted build: {extra}")
    for name in sorted(set(ours) & set(theirs)):
        if not (np.array_equal(ours[name][0], theirs[name][0])
                and np.array_equal(ours[name][1], theirs[name][1])):
            problems.append(f"{name}: arrays differ from the uninterrupted build")
    if (facts := ledger_facts(cache_dir)) != (ref := ledger_facts(reference_dir)):
        differ = sorted(s for s in set(facts) | set(ref) if facts.get(s) != ref.get(s))
        problems.append(f"ledger facts differ for {differ}")
    index_reason, manifest_reason = staleness(cache_dir)
    if index_reason:
        problems.append(f"index stale: {index_reason}")
    if manifest_reason:
        problems.append(f"manifest stale: {manifest_reason}")
    try:
        missing = [f for f in read_index(cache_dir).files if not (cache_dir / f).is_file()]
        if missing:
            problems.append(f"index references missing files {missing}")
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        problems.append(f"index unreadable: {exc}")
    return problems, len(lost)


def _warning_problems(case: FaultCase, source: str, warnings: list[str],
                      cli_output: str | None, warning_rows: list[dict] | None) -> list[str]:
    """A BUILT case has exactly the warning it expects (or none) in every place it must appear."""
    places = {"ledger warnings": warnings}
    if cli_output is not None:
        line = cli_line(cli_output, "built with warnings", source)
        places["CLI 'built with warnings' line"] = [line] if line else []
    if warning_rows is not None:
        places["npz_windows 'warnings' table"] = [
            r["warning"] for r in warning_rows if r["recording"] == source]
    problems = []
    for place, found in places.items():
        if not case.warnings and found:
            problems.append(f"unexpected {place}: {found}")
        elif case.warnings and (len(found) != 1 or missing_reasons(found[0], case.warnings)):
            problems.append(f"{place} should be one warning with {list(case.warnings)}: {found}")
    return problems
