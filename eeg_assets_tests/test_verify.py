"""Verification once per NPZ content (``lib/cache/verify.py``, ``verify-cache``).

The caches are built by ``build_split`` from EDF files written with pyedflib; damage "in place"
rewrites bytes of a window and restores the file's mtime, so its size and mtime (the ledger's
fingerprint) are unchanged and only opening the file can find it.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from eeg_assets.lib.cache.build import build_split
from eeg_assets.lib.cache.ledger import Ledger
from eeg_assets.lib.cache.verify import sample_size, verify_split
from eeg_assets.lib.config import DEFAULT_CONFIG
from eeg_assets.synthetic.edf_writer import Event, noise_generator, tusz_dir, write_recording
from eeg_assets.synthetic.fake_cache import damage_window_in_place

STEMS = ("aaaaaaaa_s001_t000", "aaaaaaba_s001_t000", "aaaaaaca_s001_t000")


def _write_corpus(data: Path, stems=STEMS) -> None:
    for i, stem in enumerate(stems):
        write_recording(tusz_dir(data, stem.split("_")[0]), stem, duration_s=70,
                        events=[Event(10 + i, 20)], generator=noise_generator(seed=i))


def _build(data: Path, cache: Path):
    return build_split(data, cache, "train", workers=1, progress=None, log=lambda line: None)


@pytest.fixture
def built(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    _write_corpus(data)
    report = _build(data, cache)
    assert len(report.built) == len(STEMS)
    return data, cache


def npz(stem: str) -> str:
    return f"{stem}_windows.npz"


def damage_in_place(path: Path, window: int = 0) -> None:
    st = os.stat(path)
    damage_window_in_place(path, window)
    assert (os.stat(path).st_size, os.stat(path).st_mtime_ns) == (st.st_size, st.st_mtime_ns)


def verified_marks(cache: Path) -> dict[str, str]:
    return {e.npz_name: e.verified_fingerprint for e in Ledger(cache).entries().values()}


def test_sample_size_is_the_fraction_rounded_up():
    assert sample_size(4667) == 10          # 9.334 -> 10
    assert sample_size(7364) == 15
    assert sample_size(3) == 1 and sample_size(0) == 0
    assert sample_size(10, fraction=1.0) == 10 and sample_size(10, fraction=0.0) == 0


def test_new_files_are_verified_once_and_recorded(built):
    _, cache = built
    assert set(verified_marks(cache).values()) == {""}  # a build verifies nothing itself
    first = verify_split(cache, DEFAULT_CONFIG, fraction=0.0)
    assert first.passed and first.files == 3
    assert first.verified == [npz(s) for s in STEMS] and first.sampled == []
    assert first.windows_checked == 3 * 2  # 2 windows each: 0 and n-1 (n // 2 == 1)
    entries = {e.npz_name: e for e in Ledger(cache).entries().values()}
    assert verified_marks(cache) == {name: e.npz_fingerprint for name, e in entries.items()}
    second = verify_split(cache, DEFAULT_CONFIG, fraction=0.0)
    assert second.passed and second.files == 3 and second.verified == []


def test_damage_that_keeps_the_fingerprint_needs_a_full_verification(built):
    _, cache = built
    verify_split(cache, DEFAULT_CONFIG, fraction=0.0)
    damage_in_place(cache / npz(STEMS[1]))
    unchanged = verify_split(cache, DEFAULT_CONFIG, fraction=0.0)
    assert unchanged.passed and unchanged.verified == []  # the damaged file was not reopened
    full = verify_split(cache, DEFAULT_CONFIG, verify_all=True)
    assert not full.passed and full.verified == [npz(s) for s in STEMS]
    assert full.failed == [npz(STEMS[1])]
    assert full.problems == [f"{npz(STEMS[1])}: window 0 has NaN/Inf"]
    # a failure is never marked verified: every later run opens it again and fails
    assert verified_marks(cache)[npz(STEMS[1])] == ""
    later = verify_split(cache, DEFAULT_CONFIG, fraction=0.0)
    assert not later.passed and later.verified == [npz(STEMS[1])]
    assert later.problems == full.problems


def test_a_rebuilt_file_is_verified_again(built):
    data, cache = built
    verify_split(cache, DEFAULT_CONFIG, fraction=0.0)
    before = verified_marks(cache)[npz(STEMS[2])]
    annotation = next(data.rglob(f"{STEMS[2]}.csv_bi"))
    annotation.write_text(annotation.read_text().replace("12.0000", "13.0000"))
    rebuilt = _build(data, cache)
    assert [e.stem for e in rebuilt.built] == [STEMS[2]]
    assert verified_marks(cache)[npz(STEMS[2])] == ""
    run = verify_split(cache, DEFAULT_CONFIG, fraction=0.0)
    assert run.passed and run.verified == [npz(STEMS[2])]
    after = verified_marks(cache)[npz(STEMS[2])]
    assert after and after != before


def test_the_sample_is_drawn_from_verified_files_and_reported(built):
    _, cache = built
    verify_split(cache, DEFAULT_CONFIG, fraction=0.0)
    a = verify_split(cache, DEFAULT_CONFIG, seed="run-1", fraction=0.5)
    b = verify_split(cache, DEFAULT_CONFIG, seed="run-1", fraction=0.5)
    assert len(a.sampled) == 2 and a.sampled == b.sampled  # ceil(0.5 * 3); same seed, same files
    assert set(a.sampled) <= {npz(s) for s in STEMS} and a.verified == a.sampled
    samples = {tuple(verify_split(cache, DEFAULT_CONFIG, seed=f"run-{i}", fraction=0.34).sampled)
               for i in range(20)}
    assert len(samples) > 1  # another seed, other files
    damage_in_place(cache / npz(STEMS[0]))
    caught = [verify_split(cache, DEFAULT_CONFIG, seed=f"run-{i}", fraction=0.34)
              for i in range(20)]
    # the damaged file fails exactly when it is sampled (then it stays failing)
    first = next(i for i, r in enumerate(caught) if npz(STEMS[0]) in r.verified)
    assert all(r.passed for r in caught[:first])
    assert all(not r.passed and r.failed == [npz(STEMS[0])] for r in caught[first:])


def test_ledger_problems_are_found_without_opening_files(built):
    _, cache = built
    verify_split(cache, DEFAULT_CONFIG, fraction=0.0)
    (cache / npz(STEMS[0])).unlink()
    stray = cache / "zzzzzzzz_s001_t000_windows.npz"
    stray.write_bytes((cache / npz(STEMS[1])).read_bytes())
    run = verify_split(cache, DEFAULT_CONFIG, fraction=0.0)
    assert not run.passed and run.missing == [npz(STEMS[0])]
    assert run.problems == [
        f"{npz(STEMS[0])}: recorded as built but missing from {cache}",
        f"{stray.name}: not produced by build-cache (no ledger entry)"]
    assert run.verified == [stray.name]  # only the file the ledger does not describe


def test_a_ledger_written_before_the_new_columns_is_migrated(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    old_columns = ("source", "stem", "status", "config_version", "edf_fingerprint",
                   "annotation_fingerprint", "reason", "npz_name", "npz_fingerprint",
                   "n_windows", "seizure_samples", "details")
    with sqlite3.connect(cache / "_ledger.sqlite") as conn:
        conn.execute("CREATE TABLE recordings (source TEXT PRIMARY KEY, "
                     + ", ".join(f"{c} TEXT" for c in old_columns[1:]) + ")")
        conn.execute(f"INSERT INTO recordings VALUES ({', '.join('?' * len(old_columns))})",
                     ("p/a.edf", "a", "built", "v1", "1:1", "2:2", "", "a_windows.npz", "3:3",
                      "2", "[0, 5]", "{}"))
    [entry] = Ledger(cache).entries().values()
    assert (entry.warnings, entry.verified_fingerprint, entry.seizure_samples) == ([], "", [0, 5])
    Ledger(cache).record_verification({"p/a.edf": "3:3"}, [])
    assert Ledger(cache).entries()["p/a.edf"].verified_fingerprint == "3:3"
    # a pass at another fingerprint than the recorded one (a rebuild in between) is not recorded
    Ledger(cache).record_verification({"p/a.edf": "4:4"}, [])
    assert Ledger(cache).entries()["p/a.edf"].verified_fingerprint == "3:3"
    Ledger(cache).record_verification({}, ["p/a.edf"])
    assert Ledger(cache).entries()["p/a.edf"].verified_fingerprint == ""


# ------------------------------------------------------------------------------------------------
# python -m eeg_assets verify-cache
# ------------------------------------------------------------------------------------------------

def test_verify_cache_cli(built, run_cli):
    _, cache = built
    first = run_cli("verify-cache", "--cache-dir", cache)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[0] == (
        f"[verify-cache] {cache}: 3 NPZ file(s), opened 3 (3 new or changed, 0 sampled from the "
        "verified ones), 6 windows checked")
    assert "[verify-cache] ok: all 3 opened file(s) passed" in first.stdout
    again = run_cli("verify-cache", "--cache-dir", cache)
    assert again.returncode == 0
    assert "opened 1 (0 new or changed, 1 sampled from the verified ones)" in again.stdout
    sampled = next(line for line in again.stdout.splitlines() if line.startswith(
        "[verify-cache] sampled: "))
    assert sampled.split(": ", 1)[1] in {npz(s) for s in STEMS}

    damage_in_place(cache / npz(STEMS[2]), window=1)
    full = run_cli("verify-cache", "--cache-dir", cache, "--all")
    assert full.returncode == 1
    assert "opened 3 (every file)" in full.stdout
    assert f"  problem: {npz(STEMS[2])}: window 1 has NaN/Inf" in full.stdout.splitlines()
    assert full.stderr.strip() == (f"error: 1 problem(s) in 1 file(s) of {cache}: "
                                   f"{npz(STEMS[2])}")
    still = run_cli("verify-cache", "--cache-dir", cache)  # without --all: it stays failing
    assert still.returncode == 1 and npz(STEMS[2]) in still.stderr


def test_verify_cache_cli_on_a_missing_or_empty_folder(tmp_path, run_cli):
    missing = run_cli("verify-cache", "--cache-dir", tmp_path / "nope")
    assert missing.returncode == 1
    assert missing.stderr.strip() == f"error: cache folder {tmp_path / 'nope'} does not exist"
    (tmp_path / "empty").mkdir()
    empty = run_cli("verify-cache", "--cache-dir", tmp_path / "empty")
    assert empty.returncode == 1 and f"no NPZ files in {tmp_path / 'empty'}" in empty.stderr
