"""Output files get the modes the umask allows (0644 under the usual 022), as ``open()`` gives them.

``mkstemp`` alone creates 0600 files, which a lab's shared cache, another container or a copy on a
volume could not read: every writer goes through :mod:`eeg_assets.lib.files`, so these tests write
through its public functions (and the build CLI) under a given umask and read the modes back.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from eeg_assets.lib.cache.npzio import write_npz
from eeg_assets.lib.files import atomic_path, write_bytes_atomic
from eeg_assets.synthetic.edf_writer import Event, noise_generator, tusz_dir, write_recording

#: umask -> the mode of a new regular file and of a new folder.
MODES = {0o022: (0o644, 0o755), 0o077: (0o600, 0o700), 0o027: (0o640, 0o750)}


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.parametrize("mask", sorted(MODES), ids=oct)
def test_npz_json_and_checkpoint_files_get_the_umask_mode(tmp_path, mask):
    npz, index, checkpoint = (tmp_path / "x_s001_t000_windows.npz",
                              tmp_path / "_dataset_index.json", tmp_path / "best.pt")
    # an output left 0600 by an older version is replaced by one with the umask's mode
    index.write_bytes(b"{}")
    index.chmod(0o600)
    with _umask(mask):
        write_npz(npz, windows=np.zeros((2, 19, 8), np.float32), labels=np.zeros(2, np.int8))
        write_bytes_atomic(index, b'{"files": []}')
        with atomic_path(checkpoint) as tmp:
            tmp.write_bytes(b"checkpoint bytes")
    expected = MODES[mask][0]
    assert {p.name: oct(_mode(p)) for p in (npz, index, checkpoint)} == {
        p.name: oct(expected) for p in (npz, index, checkpoint)}
    assert index.read_bytes() == b'{"files": []}'
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [npz.name, index.name, checkpoint.name])  # no temporary file left


def test_build_cli_outputs_follow_the_callers_umask(tmp_path):
    """``python -m eeg_assets build-cache`` under ``umask 027``: every file of the cache (NPZ,
    index, manifest, ledger, lock) is 0640 and the folder 0750, not 0600."""
    data, cache = tmp_path / "data", tmp_path / "cache"
    write_recording(tusz_dir(data, "aaaaaaaa"), "aaaaaaaa_s001_t000", duration_s=70,
                    events=[Event(10.0, 20.5)], generator=noise_generator(seed=1))
    command = [sys.executable, "-m", "eeg_assets", "build-cache", "--data-dir", str(data),
               "--cache-dir", str(cache), "--split", "train", "--no-progress", "--workers", "1"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BGB_", "EEG_ASSETS_"))}
    done = subprocess.run(["bash", "-c", 'umask 027 && exec "$@"', "bash", *command],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    files = sorted(p for p in cache.iterdir() if p.is_file())
    assert {"aaaaaaaa_s001_t000_windows.npz", "_dataset_index.json",
            "manifest.json"} <= {p.name for p in files}
    file_mode, folder_mode = MODES[0o027]
    assert {p.name: oct(_mode(p)) for p in files} == {p.name: oct(file_mode) for p in files}
    assert oct(_mode(cache)) == oct(folder_mode)
