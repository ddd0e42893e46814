"""Verification once per NPZ content (``lib/cache/verify.py``, ``verify-cache``).

The caches are built by ``build_split`` from EDF files written with pyedflib, or, where a test needs
windows that a three-window sample misses, written by the NPZ writer through ``fake_cache`` at full
size (19 channels, 60 s windows at 256 Hz). Damage "in place" rewrites bytes of a window or a label
row and restores the file's mtime, so its size and mtime (the ledger's fingerprint) are unchanged
and only reading the file can find it. Expected CRC-32s come from ``zipfile``, never from the
library.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from eeg_assets.lib.cache.build import build_split
from eeg_assets.lib.cache.ledger import Ledger
from eeg_assets.lib.cache.npzio import (
    NpzChecksumError,
    locate_member,
    open_member,
    read_member_chunks,
    write_npz,
)
from eeg_assets.lib.cache.verify import sample_size, verify_npz_file, verify_split
from eeg_assets.lib.config import DEFAULT_CONFIG
from eeg_assets.lib.dataset.manifest import DamagedNpzError, scan_manifest
from eeg_assets.synthetic import fake_cache
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


def test_a_ledger_without_the_checksum_column_gets_it_and_records_checksums(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    columns = ("source", "stem", "status", "config_version", "edf_fingerprint",
               "annotation_fingerprint", "reason", "npz_name", "npz_fingerprint", "n_windows",
               "seizure_samples", "details", "warnings", "verified_fingerprint")
    with sqlite3.connect(cache / "_ledger.sqlite") as conn:
        conn.execute("CREATE TABLE recordings (source TEXT PRIMARY KEY, "
                     + ", ".join(f"{c} TEXT" for c in columns[1:]) + ")")
        conn.execute(f"INSERT INTO recordings VALUES ({', '.join('?' * len(columns))})",
                     ("p/a.edf", "a", "built", "v1", "1:1", "2:2", "", "a_windows.npz", "3:3",
                      "1", "[0]", "{}", "[]", "3:3"))
    [entry] = Ledger(cache).entries().values()
    assert (entry.verified_fingerprint, entry.verified_checksum) == ("3:3", "")
    Ledger(cache).record_verification({"p/a.edf": "3:3"}, [], {"p/a.edf": "labels.npy:0000abcd"})
    entry = Ledger(cache).entries()["p/a.edf"]
    assert (entry.verified_fingerprint, entry.verified_checksum) == ("3:3", "labels.npy:0000abcd")
    Ledger(cache).record_verification({}, ["p/a.edf"])
    entry = Ledger(cache).entries()["p/a.edf"]
    assert (entry.verified_fingerprint, entry.verified_checksum) == ("", "")


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


# ------------------------------------------------------------------------------------------------
# Every byte: CRC-32 of each member and the value rules on every window
# ------------------------------------------------------------------------------------------------

W = DEFAULT_CONFIG.window_samples  # 15360 samples per window (60 s at 256 Hz)
FULL = ("pppppppa_s001_t000", "pppppppb_s001_t000", "pppppppc_s001_t000")
#: Per window, seizure samples of each full-size file: 5 windows, so the old three-window sample
#: (0, 2, 4) never looks at windows 1 and 3.
FULL_COUNTS = ([0, W, W, W // 2, 0], [0, 0, 0, 0, 0], [W, W, W, W, W // 4])
N_WINDOWS = 5
WINDOW_BYTES = len(DEFAULT_CONFIG.channels) * W * 4
LABEL_ROW_BYTES = W * 4
CRC_PROBLEM = re.compile(r"(\S+): (windows|labels)\.npy fails its CRC-32 check \(stored "
                         r"([0-9a-f]{8}), read ([0-9a-f]{8})\): its bytes changed after it was "
                         r"written")


@pytest.fixture
def full_size(tmp_path):
    """Three full-size NPZs (written by the real writer) and their ledger entries."""
    cache = tmp_path / "cache"
    for stem, counts in zip(FULL, FULL_COUNTS):
        fake_cache.write_recording(cache, stem, counts, DEFAULT_CONFIG,
                                   channels=len(DEFAULT_CONFIG.channels))
    return cache


def rewrite_in_place(path: Path, member: str, offset: int, data: bytes) -> None:
    """Overwrite bytes of a member's data at ``offset`` (bytes), keeping size and mtime."""
    st = os.stat(path)
    array = open_member(path, member)
    start = array.offset + offset
    del array
    with open(path, "r+b") as fh:
        fh.seek(start)
        fh.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (os.stat(path).st_size, os.stat(path).st_mtime_ns) == (st.st_size, st.st_mtime_ns)


def flip_bytes(path: Path, member: str, offset: int, n: int, mask: int = 0xFF) -> None:
    array = open_member(path, member)
    original = np.asarray(array).reshape(-1).view(np.uint8)[offset:offset + n].copy()
    del array
    rewrite_in_place(path, member, offset, (original ^ np.uint8(mask)).tobytes())


def set_label_row(path: Path, row: int, value: float, samples: int = W) -> None:
    rewrite_in_place(path, "labels", row * LABEL_ROW_BYTES,
                     np.full(samples, value, np.float32).tobytes())


def first_damaged_member(path: Path) -> str | None:
    """The first member whose bytes fail their CRC-32, as ``zipfile`` finds it."""
    with zipfile.ZipFile(path) as zf:
        return zf.testzip()


def zip_crcs(path: Path) -> dict[str, int]:
    with zipfile.ZipFile(path) as zf:
        return {info.filename: info.CRC for info in zf.infolist()}


def member_bytes(path: Path) -> int:
    """Bytes of an NPZ's members, headers and data: what a full check reads."""
    with zipfile.ZipFile(path) as zf:
        return sum(info.file_size for info in zf.infolist())


def crc_problem(problem: str) -> tuple[str, str]:
    """``(npz name, member)`` of a CRC-32 problem line."""
    match = CRC_PROBLEM.fullmatch(problem)
    assert match, problem
    return match.group(1), f"{match.group(2)}.npy"


def test_bytes_flipped_in_a_middle_window_fail_full_verification(full_size):
    cache = full_size
    assert verify_split(cache, DEFAULT_CONFIG, fraction=0.0).passed
    target = cache / npz(FULL[1])
    # every bit of 16 samples inverted in window 3 (of 0-4): exponents swing far past the clip
    flip_bytes(target, "windows", 3 * WINDOW_BYTES + WINDOW_BYTES // 2, 64)
    assert first_damaged_member(target) == "windows.npy"
    unchanged = verify_split(cache, DEFAULT_CONFIG, fraction=0.0)
    assert unchanged.passed and unchanged.verified == []  # size and mtime say "verified"

    full = verify_split(cache, DEFAULT_CONFIG, verify_all=True)
    assert not full.passed and full.failed == [npz(FULL[1])]
    assert full.windows_checked == 3 * N_WINDOWS
    [problem] = full.problems
    assert problem.startswith(f"{npz(FULL[1])}: window 3 exceeds +-10.0 sigma (|value| up to ")
    assert float(problem.rsplit(" ", 1)[1].rstrip(")")) > 10
    assert verified_marks(cache)[npz(FULL[1])] == ""
    again = verify_split(cache, DEFAULT_CONFIG, fraction=0.0)  # it stays failing until rebuilt
    assert again.verified == [npz(FULL[1])] and again.problems == full.problems


def test_a_flip_inside_the_clip_range_is_found_by_the_crc_of_its_member(full_size):
    cache = full_size
    target = cache / npz(FULL[0])
    # the lowest mantissa bit of one sample of window 1: a change of one part in 2**23
    flip_bytes(target, "windows", WINDOW_BYTES + 4000, 1, mask=0x01)
    report = verify_split(cache, DEFAULT_CONFIG, verify_all=True)
    assert report.failed == [npz(FULL[0])]
    [problem] = report.problems
    assert crc_problem(problem) == (npz(FULL[0]), "windows.npy")
    assert first_damaged_member(target) == "windows.npy"
    stored = CRC_PROBLEM.fullmatch(problem).group(3)
    assert int(stored, 16) == zip_crcs(target)["windows.npy"]


def test_a_label_row_set_to_one_with_size_and_mtime_kept_is_caught(full_size):
    cache = full_size
    first = verify_split(cache, DEFAULT_CONFIG, fraction=0.0)
    assert first.passed and first.bytes_read == sum(member_bytes(cache / npz(s)) for s in FULL)
    target = cache / npz(FULL[2])
    set_label_row(target, 4, 1.0)  # a partial window (3840 of 15360 samples) made a full one
    assert first_damaged_member(target) == "labels.npy"

    full = verify_split(cache, DEFAULT_CONFIG, verify_all=True)
    assert not full.passed and full.failed == [npz(FULL[2])]
    [problem] = full.problems
    assert crc_problem(problem) == (npz(FULL[2]), "labels.npy")
    entry = next(e for e in Ledger(cache).entries().values() if e.npz_name == npz(FULL[2]))
    assert (entry.verified_fingerprint, entry.verified_checksum) == ("", "")
    later = verify_split(cache, DEFAULT_CONFIG, fraction=0.0)
    assert later.verified == [npz(FULL[2])] and later.problems == full.problems


def test_half_a_label_row_set_to_half_is_caught(full_size):
    cache = full_size
    target = cache / npz(FULL[0])
    set_label_row(target, 1, 0.5, samples=W // 2)
    assert first_damaged_member(target) == "labels.npy"
    report = verify_split(cache, DEFAULT_CONFIG, verify_all=True)
    assert report.failed == [npz(FULL[0])]
    # the window that breaks a value rule says more than the checksum, which is not repeated
    assert report.problems == [f"{npz(FULL[0])}: labels of window 1 are not binary "
                               "(0.5 among them)"]


def test_a_pass_records_the_members_crcs_the_zip_stores(full_size):
    cache = full_size
    verify_split(cache, DEFAULT_CONFIG, fraction=0.0)
    for entry in Ledger(cache).entries().values():
        crcs = zip_crcs(cache / entry.npz_name)
        assert entry.verified_checksum == (f"labels.npy:{crcs['labels.npy']:08x},"
                                           f"windows.npy:{crcs['windows.npy']:08x}")
        assert entry.verified_fingerprint == entry.npz_fingerprint


def test_the_sample_catches_damage_that_keeps_size_and_mtime(full_size):
    cache = full_size
    verify_split(cache, DEFAULT_CONFIG, fraction=0.0)
    # a seed whose sample of one file in three is the file about to be damaged
    seed = next(f"run-{i}" for i in range(100) if verify_split(
        cache, DEFAULT_CONFIG, seed=f"run-{i}", fraction=0.3).sampled == [npz(FULL[1])])
    target = cache / npz(FULL[1])
    set_label_row(target, 1, 1.0)  # a no_seizure window made a full_seizure one
    missed = verify_split(cache, DEFAULT_CONFIG, fraction=0.0)
    assert missed.passed and missed.verified == []

    sampled = verify_split(cache, DEFAULT_CONFIG, seed=seed, fraction=0.3)
    assert sampled.sampled == sampled.verified == [npz(FULL[1])]
    assert not sampled.passed and sampled.failed == [npz(FULL[1])]
    [problem] = sampled.problems
    assert crc_problem(problem) == (npz(FULL[1]), "labels.npy")
    assert verified_marks(cache)[npz(FULL[1])] == ""
    assert verify_split(cache, DEFAULT_CONFIG, fraction=0.0).failed == [npz(FULL[1])]


def test_content_replaced_with_size_and_mtime_kept_fails_against_the_recorded_checksum(
        full_size):
    cache = full_size
    verify_split(cache, DEFAULT_CONFIG, fraction=0.0)
    target = cache / npz(FULL[0])
    before = zip_crcs(target)
    st = os.stat(target)
    # a self-consistent NPZ of the same shapes: every CRC-32 matches its bytes
    windows = np.asarray(open_member(target, "windows")) * np.float32(0.5)
    labels = np.asarray(open_member(target, "labels"))
    write_npz(target, windows=windows, labels=labels)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(target).st_size == st.st_size and first_damaged_member(target) is None
    after = zip_crcs(target)
    assert after["windows.npy"] != before["windows.npy"]

    report = verify_split(cache, DEFAULT_CONFIG, verify_all=True)
    assert report.failed == [npz(FULL[0])]
    assert report.problems == [
        f"{npz(FULL[0])}: its zip records CRC-32s labels.npy:{after['labels.npy']:08x},"
        f"windows.npy:{after['windows.npy']:08x}, but it passed verification with "
        f"labels.npy:{before['labels.npy']:08x},windows.npy:{before['windows.npy']:08x}: its "
        "content was replaced with size and mtime unchanged"]


def test_a_full_check_holds_a_few_windows_in_memory(tmp_path):
    cache = tmp_path / "cache"
    name = fake_cache.write_recording(cache, "qqqqqqqa_s001_t000", [0] * 40, DEFAULT_CONFIG,
                                      channels=len(DEFAULT_CONFIG.channels))
    path = cache / name
    assert path.stat().st_size > 45e6
    tracemalloc.start()
    try:
        check = verify_npz_file(path, DEFAULT_CONFIG)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert check.problems == [] and check.windows == 40
    assert check.bytes_read > 45e6
    assert peak < 12e6  # two 4 MiB buffers and small per-window results, not the 47 MB file


def test_the_crc_check_agrees_with_zipfile_on_numpy_written_npz(tmp_path):
    path = tmp_path / "plain.npz"
    rng = np.random.default_rng(3)
    np.savez(path, windows=rng.standard_normal((6, 4, 50)).astype(np.float32),
             labels=np.zeros((6, 50), np.float32))
    located = locate_member(path, "windows")
    chunks = [chunk.copy() for chunk in read_member_chunks(path, located, rows=4)]
    assert [len(c) for c in chunks] == [4, 2]
    with np.load(path) as npz_file:
        assert np.array_equal(np.concatenate(chunks), npz_file["windows"])
    flip_bytes(path, "windows", 5 * 4 * 50 * 4 + 7, 1, mask=0x10)  # in the last chunk
    assert first_damaged_member(path) == "windows.npy"
    with pytest.raises(NpzChecksumError) as caught:
        for _ in read_member_chunks(path, located, rows=4):
            pass
    assert caught.value.member == "windows.npy" and caught.value.stored == located.crc
    assert str(caught.value).startswith(f"{path}: windows.npy fails its CRC-32 check")


# ------------------------------------------------------------------------------------------------
# The damage through the commands: verify-cache --all and scan-cache
# ------------------------------------------------------------------------------------------------

def damage_three_files(cache: Path) -> None:
    """The issue's three files: bytes flipped in a middle window, a label row set to 1.0, half
    a label row set to 0.5, each with size and mtime kept."""
    flip_bytes(cache / npz(FULL[0]), "windows", 3 * WINDOW_BYTES + 1000, 64)
    set_label_row(cache / npz(FULL[1]), 1, 1.0)
    set_label_row(cache / npz(FULL[2]), 3, 0.5, samples=W // 2)


def test_verify_cache_all_fails_each_damaged_file_naming_what_is_damaged(full_size, run_cli):
    cache = full_size
    assert run_cli("verify-cache", "--cache-dir", cache).returncode == 0
    damage_three_files(cache)
    for stem, member in zip(FULL, ("windows.npy", "labels.npy", "labels.npy")):
        assert first_damaged_member(cache / npz(stem)) == member
    full = run_cli("verify-cache", "--cache-dir", cache, "--all")
    assert full.returncode == 1, full.stdout
    assert "ok: all" not in full.stdout and "Traceback" not in full.stderr
    problems = [line[len("  problem: "):] for line in full.stdout.splitlines()
                if line.startswith("  problem: ")]
    assert len(problems) == 3
    assert problems[0].startswith(f"{npz(FULL[0])}: window 3 exceeds +-10.0 sigma")
    assert crc_problem(problems[1]) == (npz(FULL[1]), "labels.npy")
    assert problems[2] == f"{npz(FULL[2])}: labels of window 3 are not binary (0.5 among them)"
    assert full.stderr.strip() == (f"error: 3 problem(s) in 3 file(s) of {cache}: "
                                   + ", ".join(npz(stem) for stem in FULL))


def manifest_entries(cache: Path) -> dict[str, list[tuple[str, int]]]:
    manifest = json.loads((cache / "manifest.json").read_text())
    return {category: [(e["cache_file"], e["window_idx"]) for e in entries]
            for category, entries in manifest.items()}


def test_scan_cache_takes_no_labels_from_a_damaged_file(full_size, run_cli):
    cache = full_size
    clean = run_cli("scan-cache", "--cache-dir", cache)
    assert clean.returncode == 0, clean.stderr
    before = manifest_entries(cache)
    assert {c: len(entries) for c, entries in before.items()} == {
        "partial_seizure": 2, "full_seizure": 6, "no_seizure": 7}
    set_label_row(cache / npz(FULL[1]), 1, 1.0)  # would make a no_seizure window full_seizure

    damaged = run_cli("scan-cache", "--cache-dir", cache)
    assert damaged.returncode == 1
    assert "Traceback" not in damaged.stderr
    lines = damaged.stderr.splitlines()
    assert lines[0] == (f"error: the labels of 1 NPZ file(s) in {cache} fail their CRC-32 "
                        "check, so scan-cache took no labels from them:")
    assert crc_problem(lines[1].strip()) == (npz(FULL[1]), "labels.npy")
    assert lines[2] == ("manifest.json and _dataset_index.json were written without them (2 "
                        "partial_seizure, 6 full_seizure, 2 no_seizure windows); delete them and "
                        "run build-cache to rebuild them, then scan-cache again")
    after = manifest_entries(cache)
    assert {name for entries in after.values() for name, _ in entries} == {npz(FULL[0]),
                                                                          npz(FULL[2])}
    assert after["full_seizure"] == before["full_seizure"]  # 6, not the damaged 7th
    index = json.loads((cache / "_dataset_index.json").read_text())
    assert index["files"] == [npz(FULL[0]), npz(FULL[2])]


def test_scan_manifest_reports_what_it_wrote_without_the_damaged_files(full_size):
    cache = full_size
    set_label_row(cache / npz(FULL[0]), 0, 1.0)
    with pytest.raises(DamagedNpzError) as caught:
        scan_manifest(cache, DEFAULT_CONFIG)
    [line] = caught.value.damaged
    assert crc_problem(line) == (npz(FULL[0]), "labels.npy")
    result = caught.value.result
    assert result.facts.names == (npz(FULL[1]), npz(FULL[2]))
    assert result.damaged == caught.value.damaged
    # nothing of the others is left out, and the written manifest is the returned one
    assert manifest_entries(cache) == {c: [(e["cache_file"], e["window_idx"]) for e in entries]
                                       for c, entries in result.manifest.items()}
    set_label_row(cache / npz(FULL[1]), 0, 1.0)
    set_label_row(cache / npz(FULL[2]), 0, 0.0)
    with pytest.raises(DamagedNpzError) as nothing:
        scan_manifest(cache, DEFAULT_CONFIG)
    assert nothing.value.result is None and len(nothing.value.damaged) == 3
    assert "nothing was written (no NPZ files in" in str(nothing.value)
