"""Uncompressed NPZ files written window by window and read one window at a time.

``np.savez`` needs every array in memory and ``np.load`` of an ``.npz`` cannot memory-map. A
TUSZ recording of a few hours is gigabytes of overlapping windows, so the writer streams each
window's bytes into a stored (uncompressed) zip member, and the reader memory-maps a member by
locating its bytes in the zip. The files remain ordinary NPZs that ``np.load`` reads.
"""

from __future__ import annotations

import io
import math
import struct
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eeg_assets.lib.cache.crc32 import crc32_combine, windows_crc32
from eeg_assets.lib.files import atomic_path

#: Suffix of a cache file, ``<edf_stem>_windows.npz`` (the seed's cache layout).
NPZ_SUFFIX = "_windows.npz"

_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
_LOCAL_HEADER_MAGIC = b"PK\x03\x04"


def npz_name_for(stem: str) -> str:
    """The cache file name of the recording ``<stem>.edf``."""
    return f"{stem}{NPZ_SUFFIX}"


class NpzFormatError(ValueError):
    """An NPZ member is missing, compressed or not a plain array."""


def _array_header(shape: tuple[int, ...], dtype: np.dtype) -> dict:
    return {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
            "shape": tuple(int(n) for n in shape)}


@dataclass(frozen=True)
class WindowedArray:
    """An NPZ member made of overlapping windows along the last axis of ``source``.

    The member is ``np.stack([source[..., i * stride:i * stride + window] for i in
    range(n_windows)])``, shape ``(n_windows, *source.shape[:-1], window)``, but it is written
    from ``source`` directly: no window is ever copied, and each sample is checksummed once.
    """

    source: np.ndarray
    n_windows: int
    window: int
    stride: int

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.n_windows, *self.source.shape[:-1], self.window)

    def rows(self) -> Iterator[np.ndarray]:
        rows = self.source.reshape(-1, self.source.shape[-1])
        for start in range(0, self.n_windows * self.stride, self.stride):
            yield from rows[:, start:start + self.window]


def write_npz(path: Path, **members: np.ndarray | WindowedArray) -> None:
    """Atomically write an uncompressed NPZ of ``members`` (arrays or :class:`WindowedArray`).

    No fsync: it doubled the cost of a cache build, and a file lost to an OS crash no longer
    matches the size and mtime the ledger recorded, so the next build redoes it.
    """
    with atomic_path(Path(path), durable=False) as tmp, open(tmp, "r+b") as fh:
        # "r+b", not "w": ext4 flushes a file truncated on open when it is closed, which made
        # every NPZ wait for the disk (the temporary file is new and empty anyway).
        archive = _StoredZip(fh)
        for name, member in members.items():
            if isinstance(member, WindowedArray):
                source = np.asarray(member.source, order="C")
                if source.shape[-1] < (member.n_windows - 1) * member.stride + member.window:
                    raise ValueError(f"{name}: {member.n_windows} windows need more samples "
                                     f"than the {source.shape[-1]} given")
                member = WindowedArray(source, member.n_windows, member.window, member.stride)
                shape, dtype, pieces = member.shape, source.dtype, member.rows()
                data_crc = windows_crc32(source, member.n_windows, member.window, member.stride)
            else:
                array = np.asarray(member, order="C")
                shape, dtype, pieces = array.shape, array.dtype, [array]
                data_crc = zlib.crc32(array)
            archive.add(f"{name}.npy", _npy_header(shape, dtype), pieces,
                        math.prod(shape) * dtype.itemsize, data_crc)
        archive.close()


def _npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    if dtype.hasobject or not dtype.isnative:
        raise ValueError(f"cannot write a {dtype} array to an NPZ here")
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, _array_header(shape, dtype))
    return header.getvalue()


class _StoredZip:
    """A ZIP64 archive of stored (uncompressed) members, written in one pass.

    ``zipfile`` checksums every byte as it is written; here each member's CRC-32 is given, so
    that overlapping windows need not be checksummed once per window. Timestamps are fixed
    (1980-01-01), so equal arrays give byte-identical files.
    """

    _VERSION = 45  # 4.5: ZIP64
    _DOS_TIME, _DOS_DATE = 0, (1 << 5) | 1
    _CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
    _END64 = struct.Struct("<4sQ2H2L4Q")
    _END64_LOCATOR = struct.Struct("<4sLQL")
    _END = struct.Struct("<4s4H2LH")
    _UNKNOWN = 0xFFFFFFFF  # "see the ZIP64 extra field"

    def __init__(self, fh):
        self._fh = fh
        self._members: list[tuple[bytes, int, int, int]] = []  # name, offset, size, crc

    def add(self, name: str, header: bytes, pieces: Iterable[np.ndarray], data_bytes: int,
            data_crc: int) -> None:
        fh, encoded = self._fh, name.encode()
        offset, size = fh.tell(), len(header) + data_bytes
        crc = crc32_combine(zlib.crc32(header), data_crc, data_bytes)
        extra = struct.pack("<2H2Q", 1, 16, size, size)
        fh.write(_LOCAL_HEADER.pack(
            _LOCAL_HEADER_MAGIC, self._VERSION, 0, 0, 0, self._DOS_TIME, self._DOS_DATE, crc,
            self._UNKNOWN, self._UNKNOWN, len(encoded), len(extra)) + encoded + extra)
        fh.write(header)
        written = 0
        for piece in pieces:
            if piece.size:  # memoryview cannot cast an empty array
                written += fh.write(memoryview(piece.reshape(-1)).cast("B"))
        if written != data_bytes:
            raise ValueError(f"{name}: wrote {written} data bytes, its header says {data_bytes}")
        self._members.append((encoded, offset, size, crc))

    def close(self) -> None:
        fh = self._fh
        directory_at = fh.tell()
        for encoded, offset, size, crc in self._members:
            extra = struct.pack("<2H3Q", 1, 24, size, size, offset)
            fh.write(self._CENTRAL.pack(
                b"PK\x01\x02", self._VERSION, 3, self._VERSION, 0, 0, 0, self._DOS_TIME,
                self._DOS_DATE, crc, self._UNKNOWN, self._UNKNOWN, len(encoded), len(extra), 0, 0,
                0, 0o644 << 16, self._UNKNOWN) + encoded + extra)
        end64_at = fh.tell()
        count = len(self._members)
        fh.write(self._END64.pack(b"PK\x06\x06", self._END64.size - 12, self._VERSION,
                                  self._VERSION, 0, 0, count, count, end64_at - directory_at,
                                  directory_at))
        fh.write(self._END64_LOCATOR.pack(b"PK\x06\x07", 0, end64_at, 1))
        fh.write(self._END.pack(b"PK\x05\x06", 0, 0, count, count, self._UNKNOWN,
                                self._UNKNOWN, 0))


def member_names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as zf:
        return [n[:-4] for n in zf.namelist() if n.endswith(".npy")]


def _read_npy_header(fh, path: Path, name: str):
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fh)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(fh)
    raise NpzFormatError(f"{path}: array {name!r} has unsupported .npy version {version}")


def open_member(path: Path, name: str) -> np.memmap:
    """Memory-map array ``name`` of an uncompressed NPZ without reading the rest of the file."""
    path = Path(path)
    with zipfile.ZipFile(path) as zf:
        try:
            info = zf.getinfo(f"{name}.npy")
        except KeyError:
            raise NpzFormatError(f"{path}: no array {name!r}") from None
        if info.compress_type != zipfile.ZIP_STORED:
            raise NpzFormatError(
                f"{path}: array {name!r} is compressed; rebuild the cache with build-cache "
                "(compressed NPZs cannot be read one window at a time)")
        header_offset = info.header_offset
    with open(path, "rb") as fh:
        fh.seek(header_offset)
        fields = _LOCAL_HEADER.unpack(fh.read(_LOCAL_HEADER.size))
        if fields[0] != _LOCAL_HEADER_MAGIC:
            raise NpzFormatError(f"{path}: corrupt zip entry for {name!r}")
        name_len, extra_len = fields[-2], fields[-1]
        fh.seek(header_offset + _LOCAL_HEADER.size + name_len + extra_len)
        shape, fortran, dtype = _read_npy_header(fh, path, name)
        if fortran or dtype.hasobject:
            raise NpzFormatError(f"{path}: array {name!r} is not a plain C-ordered array")
        offset = fh.tell()
    if int(np.prod(shape)) == 0:
        return np.zeros(shape, dtype=dtype)  # np.memmap refuses empty mappings
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)


def member_shape(path: Path, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of an NPZ member, from its header only (works for compressed members)."""
    with zipfile.ZipFile(path) as zf, zf.open(f"{name}.npy") as fh:
        shape, _fortran, dtype = _read_npy_header(fh, path, name)
    return tuple(shape), dtype
