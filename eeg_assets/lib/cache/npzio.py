"""Uncompressed NPZ files written window by window and read one window at a time.

``np.savez`` needs every array in memory and ``np.load`` of an ``.npz`` cannot memory-map. A
TUSZ recording of a few hours is gigabytes of overlapping windows, so the writer streams each
window's bytes into a stored (uncompressed) zip member, and the reader memory-maps a member by
locating its bytes in the zip. The files remain ordinary NPZs that ``np.load`` reads.

:func:`read_member_chunks` reads a member once from start to end, a few rows at a time, and checks
its bytes against the CRC-32 the zip records for it: what verification and the label scan use to
know that the bytes are still the ones written.
"""

from __future__ import annotations

import io
import math
import os
import struct
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eeg_assets.lib.cache.crc32 import crc32_combine, windows_crc32
from eeg_assets.lib.files import atomic_path

#: Suffix of a cache file, ``<edf_stem>_windows.npz`` (docs/cache-format.md).
NPZ_SUFFIX = "_windows.npz"

_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
_LOCAL_HEADER_MAGIC = b"PK\x03\x04"


def npz_name_for(stem: str) -> str:
    """The cache file name of the recording ``<stem>.edf``."""
    return f"{stem}{NPZ_SUFFIX}"


class NpzFormatError(ValueError):
    """An NPZ member is missing, compressed or not a plain array."""


class NpzChecksumError(NpzFormatError):
    """A member's bytes do not match the CRC-32 its zip entry records: they changed after writing.

    ``detail`` is the message without the path, for reports that name the file themselves.
    """

    def __init__(self, path: Path, member: str, stored: int, computed: int):
        self.path, self.member, self.stored, self.computed = Path(path), member, stored, computed
        self.detail = (f"{member} fails its CRC-32 check (stored {stored:08x}, read "
                       f"{computed:08x}): its bytes changed after it was written")
        super().__init__(f"{self.path}: {self.detail}")


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
            archive.add(f"{name}.npy", npy_header(shape, dtype), pieces,
                        math.prod(shape) * dtype.itemsize, data_crc)
        archive.close()


def npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
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


@dataclass(frozen=True)
class StoredMember:
    """Where an uncompressed NPZ member lies in its file, and what its zip entry records."""

    #: Zip member name, ``"<array>.npy"``.
    member: str
    shape: tuple[int, ...]
    dtype: np.dtype
    #: File offset of the member's first byte (its ``.npy`` header), where its CRC-32 starts.
    start: int
    #: File offset of the array's first byte.
    data_offset: int
    #: Bytes of the member (``.npy`` header and data) and their CRC-32, as the zip records them.
    size: int
    crc: int

    @property
    def data_bytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def locate_member(path: Path, name: str, zf: zipfile.ZipFile | None = None) -> StoredMember:
    """Find array ``name`` of an uncompressed NPZ: its ``.npy`` header and the zip's record.

    ``zf``, the same file already open, saves reading its central directory again.
    """
    path = Path(path)
    if zf is None:
        with zipfile.ZipFile(path) as opened:
            return locate_member(path, name, opened)
    try:
        info = zf.getinfo(f"{name}.npy")
    except KeyError:
        raise NpzFormatError(f"{path}: no array {name!r}") from None
    if info.compress_type != zipfile.ZIP_STORED:
        raise NpzFormatError(
            f"{path}: array {name!r} is compressed; rebuild the cache with build-cache "
            "(compressed NPZs cannot be read one window at a time)")
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        fields = _LOCAL_HEADER.unpack(fh.read(_LOCAL_HEADER.size))
        if fields[0] != _LOCAL_HEADER_MAGIC:
            raise NpzFormatError(f"{path}: corrupt zip entry for {name!r}")
        name_len, extra_len = fields[-2], fields[-1]
        start = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
        fh.seek(start)
        shape, fortran, dtype = _read_npy_header(fh, path, name)
        if fortran or dtype.hasobject:
            raise NpzFormatError(f"{path}: array {name!r} is not a plain C-ordered array")
        data_offset = fh.tell()
    return StoredMember(member=info.filename, shape=tuple(shape), dtype=dtype, start=start,
                        data_offset=data_offset, size=info.file_size, crc=info.CRC)


def open_member(path: Path, name: str) -> np.memmap:
    """Memory-map array ``name`` of an uncompressed NPZ without reading the rest of the file."""
    located = locate_member(path, name)
    if located.data_bytes == 0:
        return np.zeros(located.shape, dtype=located.dtype)  # np.memmap refuses empty mappings
    return np.memmap(path, dtype=located.dtype, mode="r", offset=located.data_offset,
                     shape=located.shape)


def read_member_chunks(path: Path, located: StoredMember, rows: int) -> Iterator[np.ndarray]:
    """Read a located member once, ``rows`` rows (along axis 0) at a time, checking its CRC-32.

    Parameters
    ----------
    path : Path
        The NPZ.
    located : StoredMember
        The member, from :func:`locate_member`; an array of at least one dimension.
    rows : int
        Rows per chunk (>= 1). Memory is two buffers of ``rows`` rows (one while the other is
        checksummed), whatever the member's size.

    Yields
    ------
    ndarray, shape (k, *located.shape[1:]), dtype located.dtype
        The next ``k <= rows`` rows, read-only. A chunk is a view of a reused buffer, so it holds
        its values only until the next one is read: a caller copies what it keeps.

    Raises
    ------
    NpzChecksumError
        After the last chunk, when the bytes read (``.npy`` header and data) do not match the
        CRC-32 the zip records: everything yielded must then be discarded.
    NpzFormatError
        When the zip's member size disagrees with its ``.npy`` header, or the file ends early.
    """
    path = Path(path)
    if not located.shape:
        raise NpzFormatError(f"{path}: {located.member} is a 0-d array, not rows")
    header_bytes = located.data_offset - located.start
    if located.size != header_bytes + located.data_bytes:
        raise NpzFormatError(
            f"{path}: {located.member} holds {located.size} bytes in the zip, its .npy header "
            f"describes {header_bytes + located.data_bytes}")
    rows = max(1, int(rows))
    n_rows, row_shape = located.shape[0], located.shape[1:]
    row_bytes = math.prod(row_shape) * located.dtype.itemsize
    starts = range(0, n_rows, rows)
    # Plain reads into reused buffers rather than a memmap: no page-table churn per chunk, and
    # memory stays at two chunks however large the member.
    buffers = [np.empty((min(rows, n_rows), *row_shape), dtype=located.dtype)
               for _ in range(min(2, len(starts)))]
    with open(path, "rb", buffering=0) as fh, _ChainedCrc(len(starts) > 1) as crc:
        _advise_sequential(fh, located)
        fh.seek(located.start)
        crc.add(_read_exactly(fh, bytearray(header_bytes), path, located.member))
        for number, first in enumerate(starts):
            buffer = buffers[number % 2]
            crc.wait_for(number - 2)  # the buffer's previous chunk has been checksummed
            count = min(rows, n_rows - first)
            raw = buffer.reshape(-1).view(np.uint8)[:count * row_bytes]
            crc.add(_read_exactly(fh, raw, path, located.member))
            chunk = buffer[:count]
            chunk.flags.writeable = False  # the worker may still be checksumming these bytes
            yield chunk
    if crc.final != located.crc:
        raise NpzChecksumError(path, located.member, located.crc, crc.final)


class _ChainedCrc:
    """The CRC-32 of buffers added in order, computed on one worker thread when ``threaded``.

    The worker checksums a chunk while the caller reads the next one and checks its values:
    ``zlib.crc32``, the reads and numpy's reductions all release the GIL, so they overlap. With a
    second core free, a full check of files in the page cache went from ~2.5 to ~3.7 GB/s, and of
    cold files from ~85% to ~90-100% of the disk's read rate; with every core busy it gained
    nothing and lost nothing measurable (``benchmarks/bench_verify.py``). A member of one chunk
    is checksummed inline: a thread would cost more than it saves.
    """

    def __init__(self, threaded: bool):
        self.value = 0
        self._pool = ThreadPoolExecutor(1, "npz-crc32") if threaded else None
        self._done: list[Future] = []

    def __enter__(self) -> _ChainedCrc:
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)  # never leave a worker reading a freed buffer

    def add(self, data) -> None:
        if self._pool is None:
            self.value = zlib.crc32(data, self.value)
        else:  # one worker, first in first out: the chain's order is the order added
            self._done.append(self._pool.submit(self._chain, data))

    def _chain(self, data) -> None:
        self.value = zlib.crc32(data, self.value)

    def wait_for(self, number: int) -> None:
        """Wait until chunk ``number`` (0 = the first after the header) is checksummed."""
        if self._pool is not None and number >= 0:
            self._done[number + 1].result()

    @property
    def final(self) -> int:
        for done in self._done:
            done.result()  # re-raises a worker's error
        return self.value


def _advise_sequential(fh, located: StoredMember) -> None:
    """Ask for a larger readahead for the one sequential pass (a hint: refusals are ignored)."""
    if hasattr(os, "posix_fadvise"):
        try:
            os.posix_fadvise(fh.fileno(), located.start, located.size, os.POSIX_FADV_SEQUENTIAL)
        except OSError:
            pass


def _read_exactly(fh, target, path: Path, member: str):
    """Fill ``target`` (a writable buffer) from ``fh``; returns it."""
    view, filled = memoryview(target).cast("B"), 0
    while filled < len(view):
        got = fh.readinto(view[filled:])
        if not got:
            raise NpzFormatError(f"{path}: {member} is truncated: the file ends "
                                 f"{len(view) - filled} bytes early")
        filled += got
    return target


def member_shape(path: Path, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of an NPZ member, from its header only (works for compressed members)."""
    with zipfile.ZipFile(path) as zf, zf.open(f"{name}.npy") as fh:
        shape, _fortran, dtype = _read_npy_header(fh, path, name)
    return tuple(shape), dtype
