"""Atomic files: every output is written to a locked temporary name and renamed into place.

Shared by every stage (NPZs, JSON files, checkpoints, hypotheses). Outputs get the permissions
the process umask allows (0644 under the usual 022), as ``open()`` would give them: ``mkstemp``
alone creates 0600 files, which a lab's shared cache or another container could not read.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    # os.umask can only be read by setting it; the lock keeps other threads of this process from
    # creating a file in between.
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def output_mode() -> int:
    """The mode a new regular file gets from ``open()``: ``0o666`` less the umask."""
    return 0o666 & ~_umask()


def _locked_temporary(final: Path, suffix: str) -> tuple[int, Path]:
    """A new temporary file beside ``final`` and a descriptor holding an exclusive ``flock`` on it.

    The lock says "my writer is alive" to :func:`remove_stale_temporaries`; the kernel releases it
    when the writer dies, however it dies.
    """
    while True:
        fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=suffix, dir=final.parent)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.fchmod(fd, output_mode())
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
    that looks complete. ``durable`` also fsyncs before the rename, against an OS crash. A
    writer that is not durable unlinks an existing ``final`` just before the rename instead of
    renaming over it: ext4 flushes a file renamed over another (``auto_da_alloc``), which made
    rebuilding an NPZ wait for the disk; a reader may then miss the file for that instant. The
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
        else:
            final.unlink(missing_ok=True)
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


def bytes_version(data: bytes) -> str:
    """The first 16 hex digits of the SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()[:16]


def content_version(path: Path) -> str:
    """:func:`bytes_version` of a file's bytes.

    The data version the Dagster layer records for the JSON outputs, and the version a training
    request pins them by (:mod:`eeg_assets.lib.dataset.pinned`).
    """
    return bytes_version(Path(path).read_bytes())
