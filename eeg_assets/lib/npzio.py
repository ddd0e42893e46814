"""Uncompressed NPZ files written window by window and read one window at a time.

``np.savez`` needs every array in memory and ``np.load`` of an ``.npz`` cannot memory-map. A
TUSZ recording of a few hours is gigabytes of overlapping windows, so the writer streams each
window's bytes into a stored (uncompressed) zip member, and the reader memory-maps a member by
locating its bytes in the zip. The files remain ordinary NPZs that ``np.load`` reads.
"""

from __future__ import annotations

import fcntl
import os
import struct
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
_LOCAL_HEADER_MAGIC = b"PK\x03\x04"


class NpzFormatError(ValueError):
    """An NPZ member is missing, compressed or not a plain array."""


def _array_header(shape: tuple[int, ...], dtype: np.dtype) -> dict:
    return {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
            "shape": tuple(int(n) for n in shape)}


def _locked_temporary(final: Path, suffix: str) -> tuple[int, Path]:
    """A new temporary file beside ``final`` and a descriptor holding an exclusive ``flock`` on it.

    The lock says "my writer is alive" to :func:`remove_stale_temporaries`; the kernel releases it
    when the writer dies, however it dies.
    """
    while True:
        fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=suffix, dir=final.parent)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.path.samestat(os.fstat(fd), os.stat(name)):
                return fd, Path(name)
        except FileNotFoundError:
            pass
        os.close(fd)  # a cleaner removed it between its creation and our lock: take another


@contextmanager
def atomic_path(final: Path, suffix: str = ".tmp", durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it over ``final`` only on success.

    A killed or failing writer leaves at most a ``.tmp`` file, never a file under the final name
    that looks complete. ``durable`` also fsyncs before the rename, against an OS crash. The
    temporary file is locked while it is written, so a cleaner running at the same time (another
    build of the split) leaves it alone.
    """
    final = Path(final)
    fd, tmp = _locked_temporary(final, suffix)
    try:
        yield tmp
        if durable:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)


def remove_stale_temporaries(folder: Path, pattern: str = ".*.tmp") -> list[Path]:
    """Delete the temporary files of :func:`atomic_path` writers that died before their rename.

    A temporary file whose writer is still running is locked and kept: deleting it would make
    that writer's rename fail (two builds of a split, or a build and an index/manifest update,
    running at the same time).
    """
    removed = []
    for tmp in sorted(Path(folder).glob(pattern)):
        try:
            fd = os.open(tmp, os.O_RDONLY)
        except OSError:
            continue  # renamed into place or removed meanwhile
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.path.samestat(os.fstat(fd), os.stat(tmp)):
                tmp.unlink()
                removed.append(tmp)
        except (BlockingIOError, FileNotFoundError):
            pass  # a live writer holds it, or it was just renamed into place
        finally:
            os.close(fd)
    return removed


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_path(Path(path)) as tmp:
        tmp.write_bytes(data)


def write_npz_streaming(
    path: Path,
    members: dict[str, tuple[tuple[int, ...], np.dtype, Iterable[np.ndarray]]],
) -> None:
    """Atomically write an uncompressed NPZ whose arrays arrive as chunks along axis 0.

    ``members`` maps an array name to ``(shape, dtype, chunks)``; the chunks' rows must add up to
    ``shape[0]``. No fsync: it doubled the cost of a cache build, and a file lost to an OS crash
    no longer matches the size and mtime the ledger recorded, so the next build redoes it.
    """
    with atomic_path(Path(path), durable=False) as tmp, open(tmp, "r+b") as fh:
        # "r+b", not "w": ext4 flushes a file truncated on open when it is closed, which made
        # every NPZ wait for the disk (the temporary file is new and empty anyway).
        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, (shape, dtype, chunks) in members.items():
                dtype = np.dtype(dtype)
                with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array_header_1_0(member, _array_header(shape, dtype))
                    rows = 0
                    for chunk in chunks:
                        chunk = np.asarray(chunk, dtype=dtype)
                        for piece in _contiguous_pieces(chunk):
                            member.write(memoryview(piece).cast("B"))
                        rows += chunk.shape[0] if chunk.ndim == len(shape) else 1
                    if rows != shape[0]:
                        raise ValueError(f"{name}: wrote {rows} rows, header says {shape[0]}")


def _contiguous_pieces(array: np.ndarray) -> Iterator[np.ndarray]:
    """C-ordered, contiguous sub-arrays covering ``array`` in order, without copying.

    A window is a view of 19 rows of the whole recording: each row is contiguous, the window is
    not. Writing the rows as they are saves two copies of every window (about half the write cost).
    """
    if array.flags.c_contiguous:
        yield array
    elif array.ndim == 1:
        yield np.ascontiguousarray(array)
    else:
        for sub in array:
            yield from _contiguous_pieces(sub)


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    """Atomically write small arrays as an uncompressed NPZ (same layout as the streaming writer)."""
    write_npz_streaming(path, {k: (a.shape, a.dtype, [a]) for k, a in arrays.items()})


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
