"""Patient-disjointness of the cache splits, verified from their dataset indexes.

TUSZ's official splits are patient-disjoint; a patient in two splits leaks their EEG from training
into validation or evaluation. The patient id is the first ``_`` field of an NPZ's stem
(``aaaaadkb_s010_t000_windows.npz`` -> ``aaaaadkb``).
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import combinations
from pathlib import Path

from eeg_assets.lib.config import DEFAULT_CONFIG, CacheConfig
from eeg_assets.lib.dataset.index import DatasetError, DatasetIndex, Log, ensure_index


class PatientLeakageError(DatasetError):
    """The same patient appears in more than one split."""


def patient_id(npz_name: str) -> str:
    """The TUSZ patient id of a cache file: the first ``_`` field of its stem."""
    return Path(npz_name).stem.split("_", 1)[0]


def patients_of(index: DatasetIndex) -> frozenset[str]:
    return frozenset(patient_id(name) for name in index.files)


def find_leaks(patients_by_split: Mapping[str, frozenset[str]]) -> dict[str, list[str]]:
    """Patient id -> the splits it appears in, for every patient found in two or more."""
    leaks: dict[str, list[str]] = {}
    for first, second in combinations(patients_by_split, 2):
        for patient in patients_by_split[first] & patients_by_split[second]:
            splits = leaks.setdefault(patient, [])
            splits.extend(s for s in (first, second) if s not in splits)
    return dict(sorted(leaks.items()))


def verify_patient_disjointness(split_dirs: Mapping[str, Path], log: Log = print,
                                config: CacheConfig = DEFAULT_CONFIG) -> dict[str, frozenset[str]]:
    """Check that no patient is in two splits, from each split's (validated) index.

    Logs ``OFFICIAL TUSZ SPLITS`` with patients and files per split, then
    ``✅ PATIENT DISJOINTNESS VERIFIED``; raises :class:`PatientLeakageError` naming the patients
    and splits otherwise. Returns the patients of each split.
    """
    indexes = {split: ensure_index(Path(path), config, log=log)
               for split, path in split_dirs.items()}
    return check_patient_disjointness(indexes, split_dirs, log)


def check_patient_disjointness(indexes: Mapping[str, DatasetIndex],
                               split_dirs: Mapping[str, Path], log: Log = print
                               ) -> dict[str, frozenset[str]]:
    """:func:`verify_patient_disjointness` on indexes already at hand (validated by the caller)."""
    patients = {split: patients_of(index) for split, index in indexes.items()}
    # Counted from the cache: a patient whose only recordings are too short for a window or
    # quarantined has no NPZ, so the raw-tree check (patient_disjointness) may count more.
    log("OFFICIAL TUSZ SPLITS (patients with windows in the cache)")
    for split, index in indexes.items():
        log(f"  {split}: {len(patients[split])} patients, {len(index.files)} NPZ files "
            f"({split_dirs[split]})")
    leaks = find_leaks(patients)
    if leaks:
        shown = "; ".join(f"{patient} in {', '.join(splits)}" for patient, splits in leaks.items())
        raise PatientLeakageError(f"patient leakage between splits: {len(leaks)} patient(s) in "
                                  f"more than one split: {shown}")
    log(f"✅ PATIENT DISJOINTNESS VERIFIED ({', '.join(indexes)}: no patient in two splits)")
    return patients
