"""The dataset index and the manifest: exact content, incremental = full scan, staleness, CLI."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from eeg_assets.lib.dataset import index as index_module
from eeg_assets.lib.config import DEFAULT_CONFIG
from eeg_assets.lib.dataset.index import (
    INDEX_NAME, NpzFacts, StaleCacheError, collect_facts, ensure_index, index_staleness, read_index,
    update_index,
)
from eeg_assets.lib.cache.ledger import Ledger
from eeg_assets.lib.dataset.manifest import (
    MANIFEST_NAME, ManifestError, ManifestTable, ensure_manifest, manifest_bytes,
    manifest_staleness, read_manifest, scan_manifest, update_manifest, window_categories,
)
from eeg_assets.lib.cache.npzio import write_npz
from eeg_assets.synthetic.fake_cache import SMALL_CONFIG, label_rows, write_recording

CFG = SMALL_CONFIG  # 100 label samples per window


def entry(name: str, idx: int) -> dict:
    return {"cache_file": name, "window_idx": idx}


@pytest.fixture
def split(tmp_path: Path) -> Path:
    """Two recordings whose categories are known from their counts (see expected_manifest)."""
    cache = tmp_path / "train"
    write_recording(cache, "bbbbbbbb_s001_t000", [0, 50, 99, 100, 98, 1])
    write_recording(cache, "aaaaaaaa_s001_t000", [100, 0])
    return cache


A, B = "aaaaaaaa_s001_t000_windows.npz", "bbbbbbbb_s001_t000_windows.npz"
EXPECTED = {
    "partial_seizure": [entry(B, 1), entry(B, 4), entry(B, 5)],
    "full_seizure": [entry(A, 0), entry(B, 2), entry(B, 3)],
    "no_seizure": [entry(A, 1), entry(B, 0)],
}


def touch_later(path: Path) -> None:
    """Give a rewritten file an mtime its old fingerprint cannot have (coarse clocks)."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


# ------------------------------------------------------------------------------------------------
# Categories and exact content
# ------------------------------------------------------------------------------------------------

def test_window_categories_thresholds_from_exact_counts():
    codes = window_categories([0, 1, 98, 99, 100], 100, 0.99)
    names = [("partial_seizure", "full_seizure", "no_seizure")[c] for c in codes]
    assert names == ["no_seizure", "partial_seizure", "partial_seizure", "full_seizure",
                     "full_seizure"]
    # 15206 / 15360 = 0.98997 < 0.99 <= 15207 / 15360
    assert list(window_categories([15206, 15207], 15360, 0.99)) == [0, 1]


def test_window_categories_takes_the_window_length_per_window():
    assert list(window_categories([99, 99], np.array([100, 200]), 0.99)) == [1, 0]


def test_table_serialisation_is_the_canonical_json_dumps(tmp_path):
    def facts(name, counts):
        return NpzFacts(name, "1:1", len(counts), 100, tuple(counts), None)

    table = ManifestTable.from_facts([
        facts('q"uote\\_windows.npz', [0, 100]), facts("\u00e9t\u00e9_windows.npz", [50]),
        facts("a_windows.npz", [0, 0, 7, 100, 0]), facts("b_windows.npz", []),
    ], CFG)
    manifest = table.to_manifest()
    assert manifest["no_seizure"][:3] == [entry("a_windows.npz", 0), entry("a_windows.npz", 1),
                                          entry("a_windows.npz", 4)]
    assert table.to_bytes() == manifest_bytes(manifest)
    assert table.to_bytes() == (json.dumps(manifest, separators=(",", ":")) + "\n").encode()
    assert table.counts() == {"partial_seizure": 2, "full_seizure": 2, "no_seizure": 4}
    empty = ManifestTable.from_facts([], CFG)
    assert empty.to_bytes() == manifest_bytes(empty.to_manifest())


def test_window_categories_rejects_impossible_counts():
    with pytest.raises(ValueError):
        window_categories([101], 100, 0.99)


def test_incremental_manifest_is_exact_on_hand_made_labels(split):
    manifest = update_manifest(split, CFG)
    assert manifest == EXPECTED
    assert json.loads((split / MANIFEST_NAME).read_text()) == EXPECTED
    assert list(json.loads((split / MANIFEST_NAME).read_text())) == list(EXPECTED)


def test_full_scan_reads_labels_and_matches_incremental_bytes(split):
    update_manifest(split, CFG)
    incremental = (split / MANIFEST_NAME).read_bytes()
    (split / MANIFEST_NAME).unlink()
    # Wrong ledger facts prove the scan does not use them.
    Ledger(split).remove(["aaaaaaaa/aaaaaaaa_s001_t000.edf"])
    result = scan_manifest(split, CFG)
    assert result.manifest == EXPECTED
    assert (split / MANIFEST_NAME).read_bytes() == incremental
    assert set(result.facts.scanned) == {A, B}


def test_incremental_updates_after_adding_one_file_open_no_npz(split, monkeypatch):
    update_manifest(split, CFG)
    write_recording(split, "cccccccc_s002_t001", [0, 100])

    def refuse(*_args, **_kwargs):
        raise AssertionError("an NPZ described by the ledger was opened")

    monkeypatch.setattr(index_module, "scan_npz", refuse)
    manifest = update_manifest(split, CFG)
    assert update_index(split, CFG).window_counts == (2, 6, 2)
    C = "cccccccc_s002_t001_windows.npz"
    assert manifest["full_seizure"][-1] == entry(C, 1)
    assert manifest["no_seizure"][-1] == entry(C, 0)
    monkeypatch.undo()
    incremental = (split / MANIFEST_NAME).read_bytes()
    scan_manifest(split, CFG)
    assert (split / MANIFEST_NAME).read_bytes() == incremental


def test_npz_without_labels_is_excluded_not_background(split, capsys):
    write_recording(split, "dddddddd_s001_t000", None, n_windows=4)
    manifest = ensure_manifest(split, CFG)
    files = {e["cache_file"] for entries in manifest.values() for e in entries}
    assert files == {A, B}
    assert len(manifest["no_seizure"]) == 2
    out = capsys.readouterr().out
    assert "1 file(s): dddddddd_s001_t000_windows.npz without a 'labels' array excluded" in out


# ------------------------------------------------------------------------------------------------
# Staleness
# ------------------------------------------------------------------------------------------------

def test_fresh_manifest_is_current(split):
    update_manifest(split, CFG)
    assert manifest_staleness(split, CFG) is None


def test_missing_manifest(split):
    assert manifest_staleness(split, CFG) == "missing manifest.json"


def test_empty_manifest_is_stale(split):
    (split / MANIFEST_NAME).write_text(
        json.dumps({"partial_seizure": [], "full_seizure": [], "no_seizure": []}))
    assert manifest_staleness(split, CFG) == "empty manifest.json"


def test_corrupt_manifest_is_stale(split):
    (split / MANIFEST_NAME).write_text('{"partial_seizure": [')
    assert manifest_staleness(split, CFG).startswith("corrupt manifest.json")
    (split / MANIFEST_NAME).write_text(json.dumps({"partial_seizure": [], "windows": []}))
    assert manifest_staleness(split, CFG).startswith("corrupt manifest.json: keys")


def test_missing_npz_is_detected(split):
    update_manifest(split, CFG)
    (split / A).unlink()  # the ledger still lists it
    reason = manifest_staleness(split, CFG)
    assert reason.startswith("missing NPZ (in manifest.json, not on disk): 1 file(s): " + A)


def test_extra_npz_is_detected_with_or_without_ledger(split):
    update_manifest(split, CFG)
    write_recording(split, "eeeeeeee_s001_t000", [0], record=False)
    assert "extra NPZ (on disk, not in manifest.json): 1 file(s): eeeeeeee" in \
        manifest_staleness(split, CFG)
    update_manifest(split, CFG)
    write_recording(split, "ffffffff_s001_t000", [5, 0])
    assert "extra NPZ" in manifest_staleness(split, CFG)


def test_npz_rebuilt_behind_the_ledgers_back_is_scanned(split):
    update_manifest(split, CFG)
    # Same size, different labels, no ledger update: only the fingerprint can tell.
    write_npz(split / A, windows=np.zeros((2, 3, 100), np.float32),
              labels=label_rows([0, 0], 100))
    touch_later(split / A)
    facts = collect_facts(split, CFG)
    assert facts.scanned == (A,)
    assert manifest_staleness(split, CFG, facts).startswith("changed NPZ")
    manifest = ensure_manifest(split, CFG, facts=facts, log=lambda _line: None)
    assert entry(A, 0) in manifest["no_seizure"]
    assert manifest_staleness(split, CFG) is None


def test_npz_rebuilt_by_the_builder_is_detected(split):
    update_manifest(split, CFG)
    write_recording(split, "aaaaaaaa_s001_t000", [100, 40])
    assert "changed NPZ" in manifest_staleness(split, CFG)


def test_config_change_is_detected_and_refused(split):
    update_manifest(split, CFG)
    new_config = replace(CFG, clip_sigma=8.0)
    reason = manifest_staleness(split, new_config)
    assert reason.startswith("config change: 2 file(s)")
    assert CFG.version() in reason and new_config.version() in reason
    with pytest.raises(StaleCacheError, match="rebuild the cache with build-cache"):
        ensure_manifest(split, new_config, log=lambda _line: None)


def test_threshold_change_after_rebuild_changes_categories(split):
    update_manifest(split, CFG)
    lower = replace(CFG, full_seizure_fraction=0.5)
    for stem, counts in (("bbbbbbbb_s001_t000", [0, 50, 99, 100, 98, 1]),
                         ("aaaaaaaa_s001_t000", [100, 0])):
        write_recording(split, stem, counts, lower)
    assert manifest_staleness(split, lower).startswith("changed NPZ")
    manifest = ensure_manifest(split, lower, log=lambda _line: None)
    assert entry(B, 1) in manifest["full_seizure"]  # 50 / 100 >= 0.5


def test_force_rebuild_deletes_and_rescans(split):
    update_manifest(split, CFG)
    pretty = json.dumps(EXPECTED, indent=2)
    (split / MANIFEST_NAME).write_text(pretty)  # same content, other formatting: still current
    lines: list[str] = []
    ensure_manifest(split, CFG, log=lines.append)
    assert (split / MANIFEST_NAME).read_text() == pretty and lines == []
    ensure_manifest(split, CFG, force=True, log=lines.append)
    assert json.loads((split / MANIFEST_NAME).read_text()) == EXPECTED
    assert (split / MANIFEST_NAME).read_text() != pretty
    assert lines == ["[MANIFEST] rebuilt manifest.json (BGB_FORCE_MANIFEST_REBUILD=1): "
                     "3 partial_seizure, 3 full_seizure, 2 no_seizure windows"]


def test_ensure_manifest_rebuilds_stale_and_refuses_empty_split(split, tmp_path):
    (split / MANIFEST_NAME).write_text("[]")
    lines: list[str] = []
    assert ensure_manifest(split, CFG, log=lines.append) == EXPECTED
    assert lines[0].startswith("[MANIFEST] rebuilt manifest.json (corrupt manifest.json")
    empty = tmp_path / "empty"
    write_recording(empty, "gggggggg_s001_t000", None, n_windows=2)
    with pytest.raises(ManifestError, match="none of the 1 NPZ files"):
        ensure_manifest(empty, CFG, log=lambda _line: None)
    assert not (empty / MANIFEST_NAME).exists()


def test_read_manifest_checks_entry_schema(split):
    (split / MANIFEST_NAME).write_text(json.dumps(
        {"partial_seizure": [{"cache_file": A, "window_idx": "0"}], "full_seizure": [],
         "no_seizure": []}))
    with pytest.raises(ManifestError, match="partial_seizure is not a list"):
        read_manifest(split)


# ------------------------------------------------------------------------------------------------
# The dataset index
# ------------------------------------------------------------------------------------------------

def test_index_has_seed_keys_aligned_with_provenance(split):
    update_index(split, CFG)
    data = json.loads((split / INDEX_NAME).read_text())
    assert data["files"] == [A, B]
    assert data["window_counts"] == [2, 6]
    assert data["fingerprints"] == [f"{(split / n).stat().st_size}:{(split / n).stat().st_mtime_ns}"
                                    for n in (A, B)]
    assert data["config_versions"] == [CFG.version()] * 2
    assert data["labelled"] == [True, True]
    assert data["config_version"] == CFG.version()
    assert read_index(split).recordings() == [(A, 2), (B, 6)]


def test_index_staleness_cases(split):
    assert index_staleness(split, CFG) == f"missing {INDEX_NAME}"
    update_index(split, CFG)
    assert index_staleness(split, CFG) is None
    write_npz(split / A, windows=np.zeros((2, 3, 100), np.float32), labels=label_rows([1, 1], 100))
    touch_later(split / A)
    assert index_staleness(split, CFG).startswith(f"changed NPZ (rewritten since {INDEX_NAME}")
    update_index(split, CFG)
    (split / B).unlink()
    write_recording(split, "hhhhhhhh_s001_t000", [0])
    reason = index_staleness(split, CFG)
    assert f"missing NPZ (in {INDEX_NAME}, not on disk): 1 file(s): {B}" in reason
    assert f"extra NPZ (on disk, not in {INDEX_NAME}): 1 file(s): hhhhhhhh" in reason
    update_index(split, CFG)
    assert index_staleness(split, replace(CFG, notch_hz=50.0)).startswith("config change")


def test_ensure_index_rewrites_a_stale_index(split):
    update_index(split, CFG)
    write_recording(split, "iiiiiiii_s001_t000", [0, 0, 0])
    lines: list[str] = []
    index = ensure_index(split, CFG, log=lines.append)
    assert index.files[-1] == "iiiiiiii_s001_t000_windows.npz" and index.window_counts[-1] == 3
    assert lines[0].startswith("[INDEX] rebuilding _dataset_index.json from recorded facts: "
                               "extra NPZ")
    assert read_index(split) == index


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------

def test_scan_cache_cli_writes_manifest_and_warns_about_unlabelled(tmp_path, run_cli):
    cache = tmp_path / "val"
    write_recording(cache, "aaaaaaaa_s001_t000", [0, 15360, 7000], DEFAULT_CONFIG)
    write_recording(cache, "bbbbbbbb_s001_t000", None, DEFAULT_CONFIG, n_windows=2)
    proc = run_cli("scan-cache", "--cache-dir", str(cache))
    assert proc.returncode == 0, proc.stderr
    assert "1 partial_seizure, 1 full_seizure, 1 no_seizure windows" in proc.stdout
    assert "bbbbbbbb_s001_t000_windows.npz without a 'labels' array excluded" in proc.stderr
    assert json.loads((cache / MANIFEST_NAME).read_text())["full_seizure"] == [
        entry("aaaaaaaa_s001_t000_windows.npz", 1)]
    assert (cache / INDEX_NAME).exists()


def test_scan_cache_cli_fails_without_seizure_windows(tmp_path, run_cli):
    cache = tmp_path / "val"
    write_recording(cache, "aaaaaaaa_s001_t000", [0, 0], DEFAULT_CONFIG)
    proc = run_cli("scan-cache", "--cache-dir", str(cache))
    assert proc.returncode == 1
    assert "error: no seizure windows in" in proc.stderr


def test_scan_cache_cli_fails_clearly_on_missing_or_empty_dir(tmp_path, run_cli):
    proc = run_cli("scan-cache", "--cache-dir", str(tmp_path / "nope"))
    assert proc.returncode == 1 and "does not exist" in proc.stderr
    (tmp_path / "empty").mkdir()
    proc = run_cli("scan-cache", "--cache-dir", str(tmp_path / "empty"))
    assert proc.returncode == 1 and "no NPZ files in" in proc.stderr


def test_scan_cache_cli_reports_ledger_disagreement(tmp_path, run_cli):
    cache = tmp_path / "train"
    write_recording(cache, "aaaaaaaa_s001_t000", [15360, 0], DEFAULT_CONFIG,
                    ledger_counts=[0, 0])
    proc = run_cli("scan-cache", "--cache-dir", str(cache))
    assert proc.returncode == 0, proc.stderr
    assert "disagree with the build ledger" in proc.stderr
    assert json.loads((cache / MANIFEST_NAME).read_text())["full_seizure"] == [
        entry("aaaaaaaa_s001_t000_windows.npz", 0)]
