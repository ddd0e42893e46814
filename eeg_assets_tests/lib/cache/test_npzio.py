"""The NPZ writer and reader: ordinary NPZs for np.load, zipfile and unzip, written from
overlapping windows without stacking them, with CRCs combined from each sample's block.

Expected bytes and CRCs come from numpy (np.stack) and zlib, never from the library itself.
"""

from __future__ import annotations

import shutil
import subprocess
import zipfile
import zlib

import numpy as np
import pytest

from eeg_assets.lib.cache.crc32 import crc32_combine, windows_crc32
from eeg_assets.lib.cache.npzio import WindowedArray, _StoredZip, open_member, write_npz


def stacked(source: np.ndarray, n: int, window: int, stride: int) -> np.ndarray:
    return np.stack([source[..., i * stride:i * stride + window] for i in range(n)])


@pytest.mark.parametrize("a, b", [(b"", b""), (b"abc", b""), (b"", b"xyz"),
                                  (b"hello" * 99, bytes(range(256)) * 41)])
def test_crc32_combine_equals_zlib_of_the_concatenation(a, b):
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


@pytest.mark.parametrize("rows, n_samples, window, stride", [
    (19, 40_000, 15360, 2560),   # the cache: 60 s windows every 10 s at 256 Hz, 19 channels
    (1, 40_000, 15360, 2560),    # the labels
    (3, 1_000, 100, 30),         # stride does not divide the window (blocks of gcd = 10)
    (2, 997, 64, 64),            # no overlap, trailing samples unused
    (2, 500, 50, 70),            # gaps between windows
    (4, 1_000, 1000, 1),         # one window
])
def test_windows_crc32_equals_zlib_of_the_stacked_windows(rows, n_samples, window, stride):
    source = np.random.default_rng(rows).standard_normal((rows, n_samples)).astype(np.float32)
    n = (n_samples - window) // stride + 1
    assert windows_crc32(source, n, window, stride) == zlib.crc32(
        stacked(source, n, window, stride).tobytes())


def test_windowed_members_round_trip_through_numpy_zipfile_and_unzip(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.standard_normal((19, 3000)).astype(np.float32)
    mask = (rng.random(3000) > 0.7).astype(np.float32)
    small = np.arange(12, dtype=np.int64).reshape(3, 4)
    path = tmp_path / "r_windows.npz"
    write_npz(path, windows=WindowedArray(data, 25, 600, 100),
              labels=WindowedArray(mask, 25, 600, 100), small=small)

    with np.load(path) as npz:  # zipfile checks each member's CRC as np.load reads it
        assert sorted(npz.files) == ["labels", "small", "windows"]
        assert np.array_equal(npz["windows"], stacked(data, 25, 600, 100))
        assert np.array_equal(npz["labels"], stacked(mask, 25, 600, 100))
        assert np.array_equal(npz["small"], small)
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_STORED}
    assert np.array_equal(open_member(path, "windows")[7], data[:, 700:1300])
    if shutil.which("unzip"):
        done = subprocess.run(["unzip", "-t", str(path)], capture_output=True, text=True)
        assert done.returncode == 0 and "No errors detected" in done.stdout, done.stdout


def test_plain_arrays_of_any_shape_and_memory_order_round_trip(tmp_path):
    arrays = {"scalar": np.float32(3.5), "empty": np.zeros((0, 4), np.float32),
              "transposed": np.arange(6).reshape(2, 3).T, "flags": np.array([True, False])}
    write_npz(tmp_path / "a.npz", **arrays)
    with np.load(tmp_path / "a.npz") as npz:
        for name, array in arrays.items():
            array = np.asarray(array)
            assert (npz[name].shape, npz[name].dtype) == (array.shape, array.dtype), name
            assert np.array_equal(npz[name], array), name


def test_equal_arrays_give_byte_identical_files(tmp_path):
    data = np.random.default_rng(1).standard_normal((2, 500)).astype(np.float32)
    for name in ("a.npz", "b.npz"):
        write_npz(tmp_path / name, windows=WindowedArray(data, 5, 100, 50))
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()


def test_too_few_samples_for_the_windows_is_an_error_and_leaves_no_file(tmp_path):
    data = np.zeros((2, 100), np.float32)
    with pytest.raises(ValueError, match="need more samples"):
        write_npz(tmp_path / "r.npz", windows=WindowedArray(data, 3, 60, 30))
    assert list(tmp_path.iterdir()) == []


def test_members_beyond_4_gib_use_zip64_offsets(tmp_path):
    """A long recording's NPZ passes 4 GiB, so its labels member starts beyond the 32-bit
    offsets of plain ZIP. Placed there by a seek (a sparse file, no 4 GiB written), through the
    archive writer itself: np.load would need the data to start at byte 0."""
    labels = np.arange(40, dtype=np.float32).reshape(4, 10)
    path = tmp_path / "big.npz"
    with open(path, "wb") as fh:
        fh.seek(5 * 2**30)
        archive = _StoredZip(fh)
        header = b"\x93NUMPY\x01\x00v\x00" + (
            b"{'descr': '<f4', 'fortran_order': False, 'shape': (4, 10), }".ljust(117) + b"\n")
        archive.add("labels.npy", header, [labels], labels.nbytes, zlib.crc32(labels))
        archive.close()
    with zipfile.ZipFile(path) as archive:
        assert archive.getinfo("labels.npy").header_offset == 5 * 2**30
        assert archive.testzip() is None
    assert np.array_equal(open_member(path, "labels"), labels)
