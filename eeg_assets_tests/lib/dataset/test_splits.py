"""Patient-disjointness of the splits, from their dataset indexes."""

from __future__ import annotations

from pathlib import Path

import pytest

from eeg_assets.lib.config import DEFAULT_CONFIG
from eeg_assets.lib.dataset.splits import (
    PatientLeakageError, find_leaks, patient_id, verify_patient_disjointness,
)
from eeg_assets.synthetic.fake_cache import write_recording


def make_splits(tmp_path: Path, stems: dict[str, list[str]]) -> dict[str, Path]:
    dirs = {}
    for split, split_stems in stems.items():
        dirs[split] = tmp_path / split
        dirs[split].mkdir()
        for stem in split_stems:
            write_recording(dirs[split], stem, [0], DEFAULT_CONFIG)
    return dirs


def test_patient_id_is_the_first_stem_field():
    assert patient_id("aaaaadkb_s010_t000_windows.npz") == "aaaaadkb"
    assert patient_id("aaaaaaac_s001_t002_windows.npz") == "aaaaaaac"


def test_disjoint_splits_are_verified_and_reported(tmp_path):
    dirs = make_splits(tmp_path, {
        "train": ["aaaaaaaa_s001_t000", "aaaaaaaa_s002_t000", "aaaaaaab_s001_t000"],
        "val": ["aaaaaaac_s001_t000"],
        "eval": ["aaaaaaad_s001_t000", "aaaaaaae_s003_t001"],
    })
    lines: list[str] = []
    patients = verify_patient_disjointness(dirs, log=lines.append)
    assert patients == {"train": {"aaaaaaaa", "aaaaaaab"}, "val": {"aaaaaaac"},
                        "eval": {"aaaaaaad", "aaaaaaae"}}
    report = [line for line in lines if not line.startswith("[INDEX]")]
    assert report[0] == "OFFICIAL TUSZ SPLITS (patients with windows in the cache)"
    assert report[1].startswith("  train: 2 patients, 3 NPZ files")
    assert report[2].startswith("  val: 1 patients, 1 NPZ files")
    assert report[3].startswith("  eval: 2 patients, 2 NPZ files")
    assert report[4].startswith("✅ PATIENT DISJOINTNESS VERIFIED")


def test_leakage_names_the_patients_and_splits(tmp_path):
    dirs = make_splits(tmp_path, {
        "train": ["aaaaaaaa_s001_t000", "aaaaaaab_s001_t000"],
        "val": ["aaaaaaab_s002_t000", "aaaaaaac_s001_t000"],
        "eval": ["aaaaaaab_s003_t000", "aaaaaaaa_s009_t000"],
    })
    lines: list[str] = []
    with pytest.raises(PatientLeakageError) as excinfo:
        verify_patient_disjointness(dirs, log=lines.append)
    message = str(excinfo.value)
    assert "aaaaaaaa in train, eval" in message
    assert "aaaaaaab in train, val, eval" in message
    assert "aaaaaaac" not in message
    assert not any("VERIFIED" in line for line in lines)


def test_find_leaks_on_plain_sets():
    assert find_leaks({"a": frozenset({"p1", "p2"}), "b": frozenset({"p3"})}) == {}
    assert find_leaks({"a": frozenset({"p1"}), "b": frozenset({"p1", "p2"}),
                       "c": frozenset({"p2"})}) == {"p1": ["a", "b"], "p2": ["b", "c"]}
