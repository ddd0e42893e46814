"""Faults the operating system causes and damage done behind the build's back (issue 21).

A passing read error is retried, a full disk never removes a good NPZ, a lost or damaged ledger
never deletes the cache, and a step run alone refuses an upstream file that is missing, edited or
stale. Every case goes through the public interfaces: ``build_split`` with a listing taken before
the fault (the moment a file vanishes mid-build), the ``python -m eeg_assets`` commands, and the
chain's assets on a real Dagster instance. A full disk is played by making ``write_npz`` raise
``ENOSPC`` (a tmpfs needs a mount this test cannot make); everything else is real files.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import dagster as dg
import pytest
from eeg_assets_tests.support.dagster_fixtures import (  # noqa: F401
    built_eval,
    check_results,
    failure_message,
    make_settings,
    materialize,
    sample_raw_root,
)

from eeg_assets.lib.cache import build as build_module
from eeg_assets.lib.cache.adopt import adopt_split
from eeg_assets.lib.cache.build import build_split, format_report
from eeg_assets.lib.cache.discovery import list_recordings
from eeg_assets.lib.cache.ledger import BUILT, FAILED, LEDGER_NAME, Ledger, LedgerError
from eeg_assets.lib.dataset.balanced import compose_split, write_balanced

SPLIT = "eval"


@pytest.fixture
def split(sample_raw_root, tmp_path) -> tuple[Path, Path]:  # noqa: F811
    """A copy of the sample's eval folder (mtimes kept) and an empty cache folder."""
    data = Path(shutil.copytree(sample_raw_root / SPLIT, tmp_path / "raw" / SPLIT))
    return data, tmp_path / "cache" / SPLIT


def build(data: Path, cache: Path, **kwargs):
    return build_split(data, cache, SPLIT, workers=1, progress=None, log=lambda line: None,
                       **kwargs)


def npz_bytes(cache: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(cache.glob("*.npz"))}


# ------------------------------------------------------------------------------------------------
# Passing errors are retried, not quarantined
# ------------------------------------------------------------------------------------------------

def test_a_recording_moved_away_during_a_build_is_retried_next_run(split, tmp_path):
    data, cache = split
    listing = list_recordings(data)  # the walk saw it; then it is moved away mid-build
    edf = listing.recordings[0].path
    aside = tmp_path / "aside.edf"
    edf.rename(aside)
    first = build(data, cache, listing=listing)
    (failed,) = first.failed
    assert failed.status == FAILED and not first.quarantined
    assert failed.reason == f"{failed.stem}.edf: cannot read: No such file or directory; tried " \
        "again next run"
    assert "failed, will retry 1" in format_report(first)
    aside.rename(edf)  # back, same size and mtime
    second = build(data, cache)
    assert [e.source for e in second.built] == [failed.source] and not second.failed


def test_an_annotation_unreadable_for_one_run_is_retried(split, tmp_path):
    data, cache = split
    listing = list_recordings(data)
    annotation = next(r.annotation_path for r in listing.recordings if r.annotation_path)
    aside = tmp_path / "aside.csv_bi"
    annotation.rename(aside)  # unreadable for this run (root reads chmod 000 files)
    first = build(data, cache, listing=listing)
    assert [e.status for e in first.failed] == [FAILED] and not first.quarantined
    aside.rename(annotation)
    second = build(data, cache)
    assert len(second.built) == 1 and not second.failed and not second.quarantined


# ------------------------------------------------------------------------------------------------
# A full disk never removes good output
# ------------------------------------------------------------------------------------------------

def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_during_a_rebuild_keeps_the_previous_npz_and_fails(split, monkeypatch):
    data, cache = split
    build(data, cache)
    before, entries = npz_bytes(cache), Ledger(cache).entries()
    touched = list_recordings(data).recordings[0]
    touched.path.write_bytes(touched.path.read_bytes())  # same content, new mtime: a rebuild
    monkeypatch.setattr(build_module, "write_npz", disk_full)
    report = build(data, cache)
    (failure,) = report.write_failures
    assert failure.source == touched.source and report.kept_stale == [touched.source]
    assert "No space left on device: it needs" in failure.reason
    assert f"MB are free on the file system of {cache}" in failure.reason
    assert npz_bytes(cache) == before  # the good NPZ is still there, byte for byte
    assert Ledger(cache).entries()[touched.source] == entries[touched.source]  # flagged stale
    monkeypatch.undo()
    again = build(data, cache)  # the disk has room again: the stale one is rebuilt
    assert [e.source for e in again.built] == [touched.source] and not again.failed


def test_a_step_that_cannot_write_fails_and_the_index_keeps_its_files(built_eval, tmp_path,
                                                                      monkeypatch):  # noqa: F811
    cache_root = tmp_path / "cache"
    shutil.copytree(built_eval.cache_dir, cache_root / SPLIT)
    raw = Path(shutil.copytree(built_eval.settings.raw_root, tmp_path / "raw"))
    settings = make_settings(raw, cache_root)
    edf = next((raw / SPLIT).rglob("*.edf"))
    edf.write_bytes(edf.read_bytes())
    index = json.loads((cache_root / SPLIT / "_dataset_index.json").read_text())
    monkeypatch.setattr(build_module, "write_npz", disk_full)
    with dg.instance_for_test() as instance:
        result = materialize(settings, instance, keys=["npz_windows", "dataset_index"])
    assert not result.success
    message = failure_message(result)
    assert "1 recording(s) could not be written to" in message and "it needs" in message
    assert "the previous NPZ of 1 recording(s) is kept (stale)" in message
    assert json.loads((cache_root / SPLIT / "_dataset_index.json").read_text()) == index


# ------------------------------------------------------------------------------------------------
# Ledger damage never deletes the cache
# ------------------------------------------------------------------------------------------------

def test_an_empty_ledger_stops_the_build_and_adopt_cache_takes_the_npzs_back(split, run_cli):
    data, cache = split
    build(data, cache)
    before = npz_bytes(cache)
    (cache / LEDGER_NAME).write_bytes(b"")  # truncated to 0 bytes
    refused = run_cli("build-cache", "--data-dir", data, "--cache-dir", cache, "--split", SPLIT,
                      "--no-progress")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert f"build ledger {cache / LEDGER_NAME}: missing or empty, but {cache} holds 4 NPZ" \
        in refused.stderr, refused.stderr
    assert "python -m eeg_assets adopt-cache" in refused.stderr
    assert npz_bytes(cache) == before  # nothing deleted

    adopted = run_cli("adopt-cache", "--data-dir", data, "--cache-dir", cache)
    assert adopted.returncode == 0, adopted.stderr
    assert f"[adopt-cache] {cache}: adopted 4, left to rebuild 0" in adopted.stdout
    again = build(data, cache)
    assert again.skipped == 4 and not again.built and npz_bytes(cache) == before


def test_adopt_cache_refuses_an_npz_that_does_not_match_its_recording(split):
    data, cache = split
    build(data, cache)
    (cache / LEDGER_NAME).unlink()
    recording = next(r for r in list_recordings(data).recordings
                     if r.annotation_path is not None and r.annotation_path.suffix == ".csv_bi")
    lines = recording.annotation_path.read_text().splitlines()
    header = [i for i, line in enumerate(lines) if line.startswith("channel")][0]
    # one more seizure than the NPZ's labels hold
    lines.insert(header + 1, "TERM,1.0000,9.0000,seiz,1.0000")
    recording.annotation_path.write_text("\n".join(lines) + "\n")
    report = adopt_split(data, cache)
    assert len(report.adopted) == 3
    (refused,) = report.refused
    assert refused.startswith(f"{recording.stem}_windows.npz: ") and "gives" in refused
    assert build(data, cache).built[0].source == recording.source  # the next build redoes it


def test_a_damaged_ledger_is_named_with_the_fix_and_no_traceback(split, run_cli):
    data, cache = split
    build(data, cache)
    ledger = cache / LEDGER_NAME
    with Ledger(cache) as held:  # checkpoint the WAL, so the file holds the pages
        held.entries()
    good = ledger.read_bytes()
    for leftover in ("-wal", "-shm"):
        Path(f"{ledger}{leftover}").unlink(missing_ok=True)
    ledger.write_bytes(good[:8192])
    before = npz_bytes(cache)
    for command in (("build-cache", "--data-dir", data, "--cache-dir", cache, "--split", SPLIT,
                     "--no-progress"), ("verify-cache", "--cache-dir", cache)):
        done = run_cli(*command)
        assert done.returncode == 1, (command, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr, done.stderr
        assert f"build ledger {ledger}:" in done.stderr
        assert f"mv {ledger} {ledger}.damaged" in done.stderr
    assert npz_bytes(cache) == before


def test_an_unwritable_ledger_says_the_folder_must_be_writable(tmp_path):
    (tmp_path / LEDGER_NAME).mkdir()  # where the file should be: SQLite cannot open it
    with pytest.raises(LedgerError, match="must be writable"):
        Ledger(tmp_path).put(build_module.RecordingEntry(
            source="a.edf", stem="a", status=BUILT, config_version="v", edf_fingerprint="1:1"))


# ------------------------------------------------------------------------------------------------
# Steps run alone refuse stale or edited inputs
# ------------------------------------------------------------------------------------------------

@pytest.fixture
def chain_copy(built_eval, tmp_path):  # noqa: F811
    cache_root = tmp_path / "cache"
    shutil.copytree(built_eval.cache_dir, cache_root / SPLIT)
    return make_settings(built_eval.settings.raw_root, cache_root), cache_root / SPLIT


def relabel_one_window(cache: Path) -> None:
    """manifest.json edited by hand: a no_seizure window moved to full_seizure, mtime kept."""
    path = cache / "manifest.json"
    manifest, stat = json.loads(path.read_text()), path.stat()
    manifest["full_seizure"].append(manifest["no_seizure"].pop())
    path.write_text(json.dumps(manifest))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_balanced_dataset_refuses_an_edited_manifest(chain_copy):
    settings, cache = chain_copy
    relabel_one_window(cache)
    with dg.instance_for_test() as instance:
        result = materialize(settings, instance, keys=["balanced_dataset"])
    assert not result.success
    message = failure_message(result)
    assert "manifest.json is not what the cache's recorded facts give" in message, message
    assert "materialize manifest[eval] first" in message


def test_manifest_refuses_a_missing_index(chain_copy):
    settings, cache = chain_copy
    (cache / "_dataset_index.json").unlink()
    with dg.instance_for_test() as instance:
        result = materialize(settings, instance, keys=["manifest"])
    assert not result.success
    message = failure_message(result)
    assert "_dataset_index.json is not what the cache's recorded facts give" in message, message
    assert "materialize dataset_index[eval] first" in message


def test_the_recipe_check_fails_on_a_balanced_set_composed_from_an_edited_manifest(chain_copy):
    """Composed from an edited manifest (by an older version, or by hand) and stored: the check
    that guards training blocks it."""
    settings, cache = chain_copy
    relabel_one_window(cache)
    write_balanced(cache, compose_split(cache, settings.balance_config(),
                                        settings.cache_config()), settings.balance_config())
    with dg.instance_for_test() as instance:
        # checks without their assets; a partitioned run needs one asset: the index
        result = materialize(settings, instance, selection=(
            dg.AssetSelection.assets("dataset_index")
            | dg.AssetSelection.checks_for_assets("balanced_dataset")))
    check = check_results(result)["balanced_matches_recipe"]
    assert not check.passed
    assert "manifest.json is not what the cache's recorded facts give" in \
        check.metadata["reason"].value
