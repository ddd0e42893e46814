"""The balanced recipe: arithmetic, determinism, exact ratio, log lines, balanced-info CLI."""

from __future__ import annotations

import json
import math

import pytest

from eeg_assets.lib.dataset.balanced import (
    BALANCED_NAME, BalancedSetError, compose_balanced, dataset_log_lines, pos_weight,
    read_balanced, recipe_count, write_balanced,
)
from eeg_assets.lib.config import DEFAULT_CONFIG, BalanceConfig
from eeg_assets.synthetic.fake_cache import write_recording


def make_manifest(partial: int, full: int, background: int, files: int = 4) -> dict:
    """Windows spread round-robin over ``files`` NPZ names."""
    def entries(count: int, offset: int) -> list[dict]:
        return [{"cache_file": f"p{(offset + i) % files}_windows.npz", "window_idx": offset + i}
                for i in range(count)]
    return {"partial_seizure": entries(partial, 0), "full_seizure": entries(full, 10_000),
            "no_seizure": entries(background, 20_000)}


def test_recipe_counts_with_enough_windows():
    manifest = make_manifest(partial=10, full=50, background=100)
    c = compose_balanced(manifest)
    assert (len(c.partial), len(c.full), len(c.background)) == (10, 3, 25)
    assert (c.partial_available, c.full_available, c.background_available) == (10, 50, 100)
    assert c.total == 38
    assert c.seizure_ratio == 13 / 38
    assert c.pos_weight == math.sqrt((25 / 38) / (13 / 38))


def test_recipe_takes_all_when_fewer_full_or_background_exist():
    c = compose_balanced(make_manifest(partial=10, full=1, background=7))
    assert (len(c.partial), len(c.full), len(c.background)) == (10, 1, 7)
    assert c.seizure_ratio == 11 / 18


def test_all_partial_windows_are_kept_and_draws_come_from_their_category():
    manifest = make_manifest(partial=17, full=40, background=90)
    c = compose_balanced(manifest)
    as_refs = {k: {(e["cache_file"], e["window_idx"]) for e in v} for k, v in manifest.items()}
    assert set(c.partial) == as_refs["partial_seizure"]
    assert set(c.full) <= as_refs["full_seizure"] and len(set(c.full)) == len(c.full) == 5
    assert set(c.background) <= as_refs["no_seizure"]
    assert len(set(c.background)) == len(c.background) == 42  # int(2.5 * 17)


def test_draws_are_deterministic_per_seed():
    manifest = make_manifest(partial=20, full=500, background=5000)
    first = compose_balanced(manifest, BalanceConfig(seed=42))
    assert compose_balanced(manifest, BalanceConfig(seed=42)) == first
    other = compose_balanced(manifest, BalanceConfig(seed=7))
    assert other.background != first.background
    assert len(other.background) == len(first.background) == 50


def test_ratios_are_configurable():
    c = compose_balanced(make_manifest(10, 100, 100), BalanceConfig(full_ratio=1.0,
                                                                    background_ratio=4.0))
    assert (len(c.full), len(c.background)) == (10, 40)


def test_recipe_count_uses_the_decimal_ratio():
    assert 0.29 * 100 < 29  # the float product would floor to 28
    assert recipe_count(0.29, 100) == 29
    assert recipe_count(0.3, 9) == 2 and recipe_count(2.5, 3) == 7


def test_restricting_to_files_applies_before_the_recipe():
    manifest = make_manifest(partial=8, full=8, background=80, files=4)
    c = compose_balanced(manifest, files=["p0_windows.npz"])
    assert {ref.npz_name for ref in c.windows} == {"p0_windows.npz"}
    assert c.partial_available == 2 and len(c.background) == 5


def test_no_partial_windows_is_an_error():
    with pytest.raises(BalancedSetError, match="no partial_seizure windows"):
        compose_balanced(make_manifest(partial=0, full=5, background=5))


def test_no_background_windows_is_an_error():
    with pytest.raises(BalancedSetError, match="no no_seizure windows"):
        compose_balanced(make_manifest(partial=5, full=5, background=0))


def test_pos_weight_rejects_degenerate_ratios():
    assert pos_weight(0.5) == 1.0
    for ratio in (0.0, 1.0):
        with pytest.raises(ValueError):
            pos_weight(ratio)


def test_seed_log_lines_exactly():
    c = compose_balanced(make_manifest(partial=100, full=100, background=1000))
    assert dataset_log_lines(c) == [
        "[DATASET] BalancedSeizureDataset: 380 windows from manifest",
        "[DATASET] Using BalancedSeizureDataset known distribution",
        "[DATASET] Seizure ratio: 34.2% (from manifest)",
        "[DATASET] Using pos_weight: 1.39 (sqrt scaling)",
    ]


def test_stored_composition_round_trips_and_is_checked(tmp_path):
    c = compose_balanced(make_manifest(partial=6, full=9, background=30), BalanceConfig(seed=5))
    path = write_balanced(tmp_path, c)
    data = json.loads(path.read_text())
    assert data["total"] == 6 + 1 + 15 and data["seizure_ratio"] == 7 / 22
    assert data["partial_seizure"][0] == {"cache_file": "p0_windows.npz", "window_idx": 0}
    assert read_balanced(tmp_path) == c
    data["pos_weight"] = 1.0
    path.write_text(json.dumps(data))
    with pytest.raises(BalancedSetError, match=f"corrupt {BALANCED_NAME}"):
        read_balanced(tmp_path)
    path.unlink()
    with pytest.raises(BalancedSetError, match=f"missing {BALANCED_NAME}"):
        read_balanced(tmp_path)


# ------------------------------------------------------------------------------------------------
# balanced-info CLI (real 15360-sample label rows, since the CLI uses the default config)
# ------------------------------------------------------------------------------------------------

W = DEFAULT_CONFIG.window_samples


def test_balanced_info_prints_composition_and_dataset_lines(tmp_path, run_cli):
    cache = tmp_path / "train"
    # 4 partial, 3 full, 12 background: draws int(1.2) = 1 full, int(10.0) = 10 background.
    write_recording(cache, "aaaaaaaa_s001_t000", [0, 0, 0, 0, 0, 0, 100, W, W], DEFAULT_CONFIG)
    write_recording(cache, "bbbbbbbb_s001_t000", [1, 15000, 500, W] + [0] * 6, DEFAULT_CONFIG)
    proc = run_cli("balanced-info", "--cache-dir", str(cache), "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "  partial_seizure          4         4" in lines
    assert "  full_seizure             3         1" in lines
    assert "  no_seizure              12        10" in lines
    assert "  total                   19        15" in lines
    assert "[DATASET] BalancedSeizureDataset: 15 windows from manifest" in lines
    assert "[DATASET] Seizure ratio: 33.3% (from manifest)" in lines
    assert "[DATASET] Using pos_weight: 1.41 (sqrt scaling)" in lines
    assert (cache / "manifest.json").exists()


def test_balanced_info_fails_clearly_without_partial_windows(tmp_path, run_cli):
    cache = tmp_path / "train"
    write_recording(cache, "aaaaaaaa_s001_t000", [0, W, 0], DEFAULT_CONFIG)
    proc = run_cli("balanced-info", "--cache-dir", str(cache))
    assert proc.returncode == 1
    assert "no balanced training set" in proc.stderr and "no partial_seizure windows" in proc.stderr


def test_balanced_info_honours_the_file_limit(tmp_path, run_cli):
    cache = tmp_path / "train"
    write_recording(cache, "aaaaaaaa_s001_t000", [5, 0, 0, 0], DEFAULT_CONFIG)
    write_recording(cache, "bbbbbbbb_s001_t000", [5, 5, 0, 0], DEFAULT_CONFIG)
    proc = run_cli("balanced-info", "--cache-dir", str(cache), env={"BGB_LIMIT_FILES": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "[DATASET] Using the first 1 of 2 files (BGB_LIMIT_FILES)" in proc.stdout
    assert "[DATASET] BalancedSeizureDataset: 3 windows from manifest" in proc.stdout
