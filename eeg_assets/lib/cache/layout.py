"""The two file layouts of a cache split, and the one way every reader opens a recording's windows.

``windows`` (the default, docs/cache-format.md): ``<stem>_windows.npz`` holding ``windows``
``(n_windows, 19, 15360)`` float32 and ``labels`` ``(n_windows, 15360)`` float32, every 60 s
window stored whole, so each sample is stored six times (10 s stride).

``continuous``: the preprocessed signal once, ``<stem>_data.npy`` float32 ``(n_samples, 19)``
(time-major, canonical channel order) and ``<stem>_labels.npy`` uint8 ``(n_samples,)``, where
``n_samples = (n_windows - 1) * stride + window``: the samples the windows cover (the trailing
< 10 s that no window holds is kept by neither layout). Window ``i`` is rows
``[i * stride, i * stride + window)`` transposed: bit for bit ``windows[i]`` of the windows
layout, read with one contiguous read, and each layout converts into the other exactly.

A recording's *cache file* is the file the index, manifest and ledger name: the NPZ, or the
``_data.npy`` file (its labels file goes with it). Its fingerprint covers both files of the
continuous layout, so a labels file changed behind the build's back is seen like a changed NPZ.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eeg_assets.lib.cache.ledger import FileFingerprint
from eeg_assets.lib.cache.npzio import (
    NPZ_SUFFIX, NpzChecksumError, NpzFormatError, npy_header, open_member,
)
from eeg_assets.lib.cache.windows import count_windows, window_seizure_counts
from eeg_assets.lib.config import CACHE_LAYOUTS, CacheConfig
from eeg_assets.lib.files import atomic_path

WINDOWS, CONTINUOUS = LAYOUTS = CACHE_LAYOUTS
DATA_SUFFIX = "_data.npy"
LABELS_SUFFIX = "_labels.npy"
DATA_DTYPE = np.dtype("<f4")
LABELS_DTYPE = np.dtype("u1")

#: Rows transposed and checksummed per write: bounds the temporary copy (19 x 4 B x 2^16 = 5 MB).
_WRITE_ROWS = 1 << 16
_READ_BYTES = 8 << 20
#: ``RecordingEntry.details`` key of a continuous cache file's checksums, recorded when written.
CHECKSUMS_KEY = "crc32"


class LayoutError(ValueError):
    """An unknown layout name."""


def check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise LayoutError(f"unknown cache layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    return layout


def cache_file_name(stem: str, layout: str) -> str:
    """The file the index and manifest name for the recording ``<stem>.edf``."""
    return f"{stem}{NPZ_SUFFIX}" if check_layout(layout) == WINDOWS else f"{stem}{DATA_SUFFIX}"


def layout_of(name: str) -> str | None:
    """The layout a cache file name belongs to (``None``: not a cache file)."""
    if name.endswith(DATA_SUFFIX):
        return CONTINUOUS
    if name.endswith(".npz"):
        return WINDOWS
    return None


def stem_of(name: str) -> str:
    """``<stem>_windows.npz`` or ``<stem>_data.npy`` -> ``<stem>``."""
    for suffix in (NPZ_SUFFIX, DATA_SUFFIX):
        if name.endswith(suffix):
            return name[:-len(suffix)]
    return Path(name).stem


def labels_name(data_name: str) -> str:
    return data_name[:-len(DATA_SUFFIX)] + LABELS_SUFFIX


def files_of(name: str) -> tuple[str, ...]:
    """Every file a cache file stands for: the NPZ, or the data file and its labels file."""
    return (name, labels_name(name)) if layout_of(name) == CONTINUOUS else (name,)


def remove_cache_file(cache_dir: Path, name: str) -> None:
    """Delete a cache file and, in the continuous layout, its labels file (data file first, so
    a data file is never left without its labels)."""
    for part in files_of(name):
        (Path(cache_dir) / part).unlink(missing_ok=True)


def detect_layout(cache_dir: Path, default: str = WINDOWS) -> str:
    """The layout of the cache files in ``cache_dir`` (``default`` when it holds none, or both)."""
    try:
        layouts = {layout_of(name) for name in cache_files_on_disk(cache_dir)}
    except FileNotFoundError:
        return default
    return layouts.pop() if len(layouts) == 1 else default


def file_kind(names) -> str:
    """What messages call cache files: "NPZ" in the windows layout, else "cache"."""
    return "NPZ" if all(name.endswith(".npz") for name in names) else "cache"


def is_cache_file(name: str) -> bool:
    return not name.startswith(".") and layout_of(name) is not None


def fingerprint_of(path: Path) -> str:
    """The size-and-mtime fingerprint of a cache file (both files of the continuous layout)."""
    path = Path(path)
    parts = [str(FileFingerprint.of(path.parent / name)) for name in files_of(path.name)]
    return "+".join(parts)


def fingerprint_sizes(fingerprint: str) -> tuple[int, ...]:
    """The sizes of the files a cache file's fingerprint stands for."""
    return tuple(FileFingerprint.parse(part).size for part in fingerprint.split("+"))


def fingerprint_bytes(fingerprint: str) -> int:
    """Bytes on disk that a cache file's fingerprint stands for."""
    return sum(fingerprint_sizes(fingerprint))


def cache_files_on_disk(cache_dir: Path) -> dict[str, str]:
    """``{name: fingerprint}`` of a split's cache files of either layout: one listing, one stat per
    file. A data file whose labels file is missing gets a fingerprint no build ever records."""
    stats: dict[str, os.stat_result] = {}
    with os.scandir(cache_dir) as entries:
        for entry in entries:
            if not entry.name.startswith(".") and entry.name.endswith((".npz", ".npy")):
                stats[entry.name] = entry.stat()
    found = {}
    for name, st in stats.items():
        if not is_cache_file(name):
            continue
        parts = []
        for part in files_of(name):
            part_st = stats.get(part)
            parts.append(str(FileFingerprint(part_st.st_size, part_st.st_mtime_ns))
                         if part_st is not None else "missing")
        found[name] = "+".join(parts)
    return dict(sorted(found.items()))


class ContinuousWindows:
    """The windows ``(n_windows, channels, window)`` of a time-major ``(n_samples, channels)``
    array (or the labels ``(n_windows, window)`` of an ``(n_samples,)`` one), cut on access."""

    def __init__(self, samples: np.ndarray, n_windows: int, window: int, stride: int):
        self.samples, self.n_windows, self.window, self.stride = samples, n_windows, window, stride

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.n_windows, *self.samples.shape[1:], self.window)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.samples.dtype

    def __len__(self) -> int:
        return self.n_windows

    def __getitem__(self, index: int) -> np.ndarray:
        index = int(index)
        if index < 0:
            index += self.n_windows
        if not 0 <= index < self.n_windows:
            raise IndexError(f"window {index} of {self.n_windows}")
        start = index * self.stride
        return self.samples[start:start + self.window].T


def open_continuous(data_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(data, labels)`` of a continuous cache file, memory-mapped, shapes checked."""
    data_path = Path(data_path)
    labels_path = data_path.parent / labels_name(data_path.name)
    try:
        data = np.load(data_path, mmap_mode="r")
        labels = np.load(labels_path, mmap_mode="r")
    except FileNotFoundError:
        raise
    except (ValueError, OSError) as exc:
        raise NpzFormatError(f"{data_path}: not a readable continuous cache file ({exc})") from None
    if data.ndim != 2 or data.dtype != DATA_DTYPE:
        raise NpzFormatError(f"{data_path}: data is {data.dtype} {data.shape}, expected float32 "
                             "(n_samples, channels)")
    if labels.shape != (data.shape[0],) or labels.dtype != LABELS_DTYPE:
        raise NpzFormatError(f"{labels_path}: labels are {labels.dtype} {labels.shape}, expected "
                             f"uint8 ({data.shape[0]},) like its data file")
    return data, labels


def open_windows(path: Path, config: CacheConfig) -> tuple[object, object]:
    """``(windows, labels)`` of one cache file of either layout: ``windows[i]`` is window ``i``
    ``(channels, window)`` and ``labels[i]`` its mask ``(window,)`` (float32 in the NPZ, uint8 in
    the continuous layout; equal values). Nothing is read until a window is indexed."""
    path = Path(path)
    if layout_of(path.name) == CONTINUOUS:
        data, labels = open_continuous(path)
        geometry = (count_windows(data.shape[0], config), config.window_samples,
                    config.stride_samples)
        return ContinuousWindows(data, *geometry), ContinuousWindows(labels, *geometry)
    return open_member(path, "windows"), open_member(path, "labels")


@dataclass(frozen=True)
class ContinuousChecksums:
    """CRC-32 of each file's bytes, header included, as written."""

    data: int
    labels: int

    def to_text(self) -> str:
        return f"data.npy:{self.data:08x},labels.npy:{self.labels:08x}"

    @classmethod
    def parse(cls, text: str) -> ContinuousChecksums:
        """The inverse of :meth:`to_text`."""
        values = dict(part.split(":") for part in text.split(","))
        return cls(data=int(values["data.npy"], 16), labels=int(values["labels.npy"], 16))


def recorded_checksums(details: dict) -> ContinuousChecksums | None:
    """The checksums a build recorded in a ledger entry's details (``None``: none recorded)."""
    text = details.get(CHECKSUMS_KEY)
    return ContinuousChecksums.parse(text) if text else None


def scan_continuous(data_path: Path, config: CacheConfig, labels_crc: int | None = None
                    ) -> tuple[int, ...]:
    """The seizure samples of each window of a continuous cache file (one per window), from
    its labels file (a byte per sample) and the data file's header; never the signal.

    Raises :class:`~eeg_assets.lib.cache.npzio.NpzChecksumError` when ``labels_crc`` is given and
    the labels file's bytes are not the ones written.
    """
    data_path = Path(data_path)
    _data, labels = open_continuous(data_path)
    labels_path = data_path.parent / labels_name(data_path.name)
    if labels_crc is not None:
        computed = file_checksum(labels_path)
        if computed != labels_crc:
            raise NpzChecksumError(labels_path, "labels", labels_crc, computed)
    return tuple(window_seizure_counts(np.asarray(labels), config))


def write_continuous(data_path: Path, signal: np.ndarray, mask: np.ndarray
                     ) -> ContinuousChecksums:
    """Write ``signal`` (channels, n_samples) time-major as ``data_path`` and ``mask``
    (n_samples,) as its labels file, atomically (labels first: a data file is never seen
    without its labels), returning their checksums. No fsync (as the NPZ writer: a file lost to
    an OS crash no longer matches its recorded fingerprint, so the next build redoes it)."""
    data_path = Path(data_path)
    n_channels, n_samples = signal.shape
    if mask.shape != (n_samples,):
        raise ValueError(f"mask of shape {mask.shape} for {n_samples} samples")
    labels = np.ascontiguousarray(mask > 0, dtype=LABELS_DTYPE)
    labels_crc = _write_npy(data_path.parent / labels_name(data_path.name),
                            npy_header(labels.shape, LABELS_DTYPE), iter([labels]))
    rows = ((np.ascontiguousarray(signal[:, start:start + _WRITE_ROWS].T, dtype=DATA_DTYPE))
            for start in range(0, n_samples, _WRITE_ROWS))
    data_crc = _write_npy(data_path, npy_header((n_samples, n_channels), DATA_DTYPE), rows)
    return ContinuousChecksums(data=data_crc, labels=labels_crc)


def _write_npy(path: Path, header: bytes, pieces: Iterator[np.ndarray]) -> int:
    crc = zlib.crc32(header)
    with atomic_path(path, durable=False) as tmp, open(tmp, "r+b") as fh:
        fh.write(header)
        for piece in pieces:
            crc = zlib.crc32(piece, crc)
            fh.write(memoryview(piece).cast("B"))
    return crc


def file_checksum(path: Path) -> int:
    """CRC-32 of a whole file, read once in large sequential reads."""
    crc = 0
    with open(path, "rb", buffering=0) as fh:
        buffer = bytearray(_READ_BYTES)
        view = memoryview(buffer)
        while True:
            n = fh.readinto(buffer)
            if not n:
                return crc
            crc = zlib.crc32(view[:n], crc)
