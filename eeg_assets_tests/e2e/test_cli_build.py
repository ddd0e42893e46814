"""``python -m eeg_assets build-cache`` as a user runs it: a subprocess, its exit code and output.

Each subprocess pays for importing scipy (seconds on a loaded 2-core machine), so the recordings
are short and the runs few.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from eeg_assets.lib.cache.build import BuildError, build_split
from eeg_assets.lib.cache.ledger import Ledger
from eeg_assets.synthetic.edf_writer import (
    TUSZ_EEG_ORDER, Event, eeg_labels, noise_generator, tusz_dir, write_recording,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def _corpus(root: Path, n: int = 4, **kwargs) -> list:
    """``n`` 70 s recordings in the TUSZ layout, one patient each."""
    recs = []
    for i in range(n):
        patient = f"aaaaaa{chr(97 + i)}a"
        recs.append(write_recording(tusz_dir(root, patient), f"{patient}_s001_t000",
                                    fs=(256, 250, 400)[i % 3], duration_s=70,
                                    events=[Event(10 + i, 20.5 + i)],
                                    generator=noise_generator(seed=i), **kwargs))
    return recs


def _args(data: Path, cache: Path, *extra: str) -> list[str]:
    return ["build-cache", "--data-dir", str(data), "--cache-dir", str(cache), "--split", "train",
            "--no-progress", *extra]


def _digests(cache: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(cache.glob("*_windows.npz"))}


def _facts(cache: Path) -> dict:
    return {s: (e.status, e.n_windows, e.seizure_samples, e.npz_name)
            for s, e in Ledger(cache).entries().items()}


def test_summary_names_each_quarantined_recording_and_reason(tmp_path, run_cli):
    data, cache = tmp_path / "data", tmp_path / "cache"
    _corpus(data, 2)
    write_recording(tusz_dir(data, "aaaaaaxa"), "aaaaaaxa_s001_t000",
                    labels=eeg_labels(n for n in TUSZ_EEG_ORDER if n != "O1"))
    write_recording(tusz_dir(data, "aaaaaaya"), "aaaaaaya_s001_t000", annotation=None)
    write_recording(tusz_dir(data, "aaaaaaza"), "aaaaaaza_s001_t000", duration_s=30)
    done = run_cli(*_args(data, cache, "--workers", "1"))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "split train: 5 recordings" in out
    assert "built 2 (" in out and "too short 1" in out and "quarantined 2" in out
    assert ("quarantined: aaaaaaxa/s001_2015/01_tcp_ar/aaaaaaxa_s001_t000.edf: "
            "missing EEG channels: O1 (only FZ, PZ can be reconstructed)") in out
    assert ("quarantined: aaaaaaya/s001_2015/01_tcp_ar/aaaaaaya_s001_t000.edf: "
            "aaaaaaya_s001_t000.edf: no annotation file") in out
    assert "too short: aaaaaaza/s001_2015/01_tcp_ar/aaaaaaza_s001_t000.edf" in out
    assert "Traceback" not in done.stderr
    assert sorted(_digests(cache)) == ["aaaaaaaa_s001_t000_windows.npz",
                                       "aaaaaaba_s001_t000_windows.npz"]
    # second run: everything skipped, the quarantined ones reported again
    again = run_cli(*_args(data, cache, "--workers", "1"))
    assert again.returncode == 0
    assert "skipped 5 unchanged" in again.stdout and "built 0 (" in again.stdout
    assert "quarantined: aaaaaaya/s001_2015/01_tcp_ar/aaaaaaya_s001_t000.edf" in again.stdout


def test_missing_folder_is_a_clear_error(tmp_path, run_cli):
    done = run_cli(*_args(tmp_path / "nope", tmp_path / "cache"))
    assert done.returncode == 1
    assert done.stderr.strip() == f"error: --data-dir {tmp_path / 'nope'} is not a folder"


def test_folder_without_edfs_is_a_clear_error(tmp_path, run_cli):
    (tmp_path / "data" / "x").mkdir(parents=True)
    (tmp_path / "data" / "x" / "notes.txt").write_text("no recordings here")
    done = run_cli(*_args(tmp_path / "data", tmp_path / "cache"))
    assert done.returncode == 1
    assert "error: no .edf recordings under" in done.stderr
    assert "Traceback" not in done.stderr


def test_every_recording_failed_is_an_error(tmp_path, run_cli):
    data, cache = tmp_path / "data", tmp_path / "cache"
    for i in range(2):
        write_recording(tusz_dir(data, f"aaaaaa{'ab'[i]}a"), f"aaaaaa{'ab'[i]}a_s001_t000",
                        annotation=None)
    done = run_cli(*_args(data, cache, "--workers", "1"))
    assert done.returncode == 1
    assert f"error: every recording under {data} failed; nothing was built" in done.stderr
    assert done.stdout.count("no annotation file") == 2  # the summary still says why


@pytest.mark.parametrize("how, expected", [
    (("--limit-files", "2"), 2),
    ({"BGB_LIMIT_FILES": "2"}, 2),
    ({"BGB_SMOKE_TEST": "1"}, 3),
    ((("--limit-files", "1"), {"BGB_SMOKE_TEST": "1"}), 1),  # explicit limit wins
])
def test_file_limits(tmp_path, run_cli, how, expected):
    data, cache = tmp_path / "data", tmp_path / "cache"
    recs = _corpus(data, 4)
    if isinstance(how, dict):
        extra, env = (), how
    elif isinstance(how[0], tuple):
        extra, env = how
    else:
        extra, env = how, {}
    done = run_cli(*_args(data, cache, "--workers", "1", *extra), env=env)
    assert done.returncode == 0, done.stderr
    assert f"split train: {expected} recordings" in done.stdout
    assert len(Ledger(cache).entries()) == expected
    # the first N in sorted path order
    expected_stems = sorted(r.stem for r in recs)[:expected]
    assert sorted(_digests(cache)) == [f"{s}_windows.npz" for s in expected_stems]


def test_invalid_limits_are_clear_errors(tmp_path, run_cli):
    _corpus(tmp_path / "data", 2)
    done = run_cli(*_args(tmp_path / "data", tmp_path / "cache"), env={"BGB_LIMIT_FILES": "abc"})
    assert done.returncode == 1
    assert "BGB_LIMIT_FILES must be a positive integer" in done.stderr
    assert "Traceback" not in done.stderr
    for bad in ("0", "-1"):
        done = run_cli(*_args(tmp_path / "data", tmp_path / "cache", "--limit-files", bad))
        assert done.returncode == 2
        assert f"--limit-files: expected a positive integer, got '{bad}'" in done.stderr
    assert not (tmp_path / "cache").exists()
    with pytest.raises(BuildError, match="positive"):
        build_split(tmp_path / "data", tmp_path / "cache", "train", limit_files=-1)


@pytest.mark.slow
def test_two_workers_give_byte_identical_npzs(tmp_path, run_cli):
    data = tmp_path / "data"
    _corpus(data, 3)
    one, two = tmp_path / "one", tmp_path / "two"
    done = run_cli(*_args(data, one, "--workers", "1"))
    assert done.returncode == 0, done.stderr
    done = run_cli(*_args(data, two, "--workers", "2"))
    assert done.returncode == 0, done.stderr
    assert len(_digests(one)) == 3
    assert _digests(one) == _digests(two)
    assert _facts(one) == _facts(two)


@pytest.mark.slow
def test_two_concurrent_builds_equal_one(tmp_path):
    data = tmp_path / "data"
    _corpus(data, 3)
    reference = tmp_path / "reference"
    build_split(data, reference, "train", workers=1, progress=None, log=lambda line: None)
    cache = tmp_path / "cache"
    procs = [subprocess.Popen([sys.executable, "-m", "eeg_assets", *_args(data, cache, "--workers",
                                                                         "1")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=REPO_ROOT) for _ in range(2)]
    outputs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    built = sorted(int(out.split("built ")[1].split(" ")[0]) for out, _ in outputs)
    assert built == [0, 3]  # one built everything, the other waited and found it current
    assert any("skipped 3 unchanged" in out for out, _ in outputs)
    assert _facts(cache) == _facts(reference)
    assert sorted(_digests(cache)) == sorted(_digests(reference))
    for name in _digests(cache):
        with np.load(cache / name) as ours, np.load(reference / name) as theirs:
            assert np.array_equal(ours["windows"], theirs["windows"])
            assert np.array_equal(ours["labels"], theirs["labels"])
    assert not list(cache.glob(".*.tmp"))


def test_seizure_overrun_is_built_with_a_warning_in_the_summary(tmp_path, run_cli):
    data, cache = tmp_path / "data", tmp_path / "cache"
    write_recording(tusz_dir(data, "aaaaaaoa"), "aaaaaaoa_s001_t000", duration_s=70,
                    events=[Event(0, 65, "bckg"), Event(65, 95, "fnsz")])
    write_recording(tusz_dir(data, "aaaaaala"), "aaaaaala_s001_t000", duration_s=70,
                    annotation_duration_s=70.5, events=[Event(70.1, 70.5, "fnsz")])
    done = run_cli(*_args(data, cache, "--workers", "1"))
    assert done.returncode == 0, done.stderr
    overrun = "aaaaaaoa/s001_2015/01_tcp_ar/aaaaaaoa_s001_t000.edf"
    assert (f"  built with warnings: {overrun}: aaaaaaoa_s001_t000.csv_bi: seizure at 65-95 s "
            "runs 25 s past the end of the signal (70 s); its label mask is clipped at 70 s"
            ) in done.stdout.splitlines()
    assert "built 1 (" in done.stdout and "quarantined 1 |" in done.stdout
    assert ("quarantined: aaaaaala/s001_2015/01_tcp_ar/aaaaaala_s001_t000.edf: "
            "aaaaaala_s001_t000.csv_bi: seizure at 70.1-70.5 s starts at or after the end of the "
            "signal (70 s)") in done.stdout
    entry = Ledger(cache).entries()[overrun]
    assert entry.status == "built" and len(entry.warnings) == 1
    # 70 s = 17920 samples; the mask is the event clipped to the signal: [65 * 256, 17920)
    with np.load(cache / "aaaaaaoa_s001_t000_windows.npz") as npz:
        labels = npz["labels"]
    assert labels.shape == (2, 15360)
    assert not labels[0].any()
    assert not labels[1, :16640 - 2560].any() and labels[1, 16640 - 2560:].all()
    assert entry.seizure_samples == [0, 17920 - 16640]
