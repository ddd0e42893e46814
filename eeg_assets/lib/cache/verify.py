"""Verification of a cache split against the schema of docs/cache-format.md, once per NPZ content.

Every run checks every NPZ against the build ledger (present, owned, unchanged since it was built,
current config), which costs one ``stat`` per file, or none after a build of the same run (it
recorded the NPZs it left, having checked them against the ledger itself).

Opening a file (:func:`verify_npz_file`) checks every byte it vouches for, in one sequential pass
of a few windows at a time (two buffers of :data:`CHUNK_BYTES`, whatever the file's size):

* members: exactly ``windows.npy`` and ``labels.npy``, stored (uncompressed), float32, shapes
  ``(n > 0, channels, window_samples)`` and ``(n, window_samples)``;
* bytes: each member's CRC-32, computed over its ``.npy`` header and data as they are read, equals
  the one the writer stored in the zip, so bytes changed after writing are found (any burst of up
  to 32 bits, and all but one in 2**32 other changes);
* values, in every window: finite and inside ``+-config.clip_sigma``; labels exactly 0 or 1.

A member that breaks a value rule is reported by the windows that break it (which says more than
its checksum); one whose values pass but whose CRC-32 differs is reported by name with both CRCs.

This is done once per content: the ledger records the NPZ fingerprint (size, mtime) each file
passed at, and the members' CRC-32s its zip records (its content checksum). A run opens the files
that are new or rebuilt since their last pass (or never passed), plus a random sample of the
others (:data:`SAMPLE_FRACTION`); a reopened file also fails when its zip records other CRC-32s
than those it passed with. Damage that keeps size and mtime is therefore found by the sample and by
``verify_all``, which opens every file. A file that fails loses its mark, so it fails again on
every run until it is rebuilt.
"""

from __future__ import annotations

import math
import random
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eeg_assets.lib.cache.layout import (
    CONTINUOUS,
    ContinuousChecksums,
    cache_files_on_disk,
    file_kind,
    labels_name,
    layout_of,
    open_continuous,
    recorded_checksums,
)
from eeg_assets.lib.cache.ledger import BUILT, Ledger
from eeg_assets.lib.cache.windows import count_windows
from eeg_assets.lib.cache.npzio import (
    NpzChecksumError,
    NpzFormatError,
    locate_member,
    read_member_chunks,
)
from eeg_assets.lib.config import CacheConfig

#: Share of the already-verified, unchanged NPZs re-verified on each run, rounded up: 10 of
#: TUSZ train's 4,667 files (~0.8 GB read in full, about a second), 1 of a handful.
SAMPLE_FRACTION = 0.002

#: Bytes read per step of a file's check (3 full-size windows, or the label rows of 68): a check
#: holds two such buffers, whatever the file's size. Smaller steps cost more per byte, larger
#: ones gained nothing (``benchmarks/bench_verify.py``).
CHUNK_BYTES = 4 << 20

#: Window indices named per problem before "and N more".
_LISTED = 5


@dataclass
class VerifyReport:
    """What a verification of one split found and did."""

    #: NPZs on disk (each checked against the ledger).
    files: int = 0
    #: NPZs opened and checked this run, by name: new or rebuilt ones, then the sampled ones.
    verified: list[str] = field(default_factory=list)
    #: Of ``verified``: unchanged files that had passed before, re-checked by random sample.
    sampled: list[str] = field(default_factory=list)
    windows_checked: int = 0
    #: Bytes of the NPZs read to check them (their members, headers and data).
    bytes_read: int = 0
    problems: list[str] = field(default_factory=list)
    #: NPZs that failed (a problem names each of them); none of them is marked verified.
    failed: list[str] = field(default_factory=list)
    #: NPZs the ledger records as built that are not on disk.
    missing: list[str] = field(default_factory=list)
    verify_all: bool = False

    @property
    def passed(self) -> bool:
        return not self.problems and self.files > 0


@dataclass
class FileCheck:
    """What opening one NPZ found (:func:`verify_npz_file`)."""

    #: Windows whose values were checked: all of them, unless the file is malformed.
    windows: int = 0
    problems: list[str] = field(default_factory=list)
    #: The members' CRC-32s as the zip records them, ``"labels.npy:<crc>,windows.npy:<crc>"``
    #: (hex): the content a pass is recorded with; "" when the zip could not be read.
    checksum: str = ""
    bytes_read: int = 0


def format_checksum(crcs: dict[str, int]) -> str:
    """A content checksum as the ledger records it, from ``{member: CRC-32}``."""
    return ",".join(f"{member}:{crc:08x}" for member, crc in sorted(crcs.items()))


def check_npz_file(path: Path, config: CacheConfig) -> tuple[int, list[str]]:
    """``(windows checked, problems)`` of one NPZ: :func:`verify_npz_file` without a recorded
    checksum."""
    check = verify_npz_file(path, config)
    return check.windows, check.problems


def verify_npz_file(path: Path, config: CacheConfig, verified_checksum: str = "") -> FileCheck:
    """Check one NPZ: members, storage, dtypes, shapes, every byte's CRC-32 and every window's
    values (see the module's docstring).

    Parameters
    ----------
    path : Path
        The NPZ.
    config : CacheConfig
        Its channels, window length (samples) and clip range (sigma).
    verified_checksum : str, optional
        The content checksum the file passed with before (:attr:`FileCheck.checksum`); a file
        whose zip now records other CRC-32s fails. "" compares nothing.

    Returns
    -------
    FileCheck
        Problems are one line each, starting with the file's name.
    """
    path = Path(path)
    name = path.name
    check = FileCheck()
    expected_tail = (len(config.channels), config.window_samples)
    try:
        with zipfile.ZipFile(path) as zf:
            crcs = {info.filename: info.CRC for info in zf.infolist()}
            check.checksum = format_checksum(crcs)
            if sorted(crcs) != ["labels.npy", "windows.npy"]:
                check.problems.append(f"{name}: arrays {sorted(crcs)}, expected labels.npy and "
                                      "windows.npy")
                return check
            windows = locate_member(path, "windows", zf)
            labels = locate_member(path, "labels", zf)
    except (zipfile.BadZipFile, NpzFormatError, OSError, ValueError) as exc:
        check.problems.append(f"{name}: unreadable: {exc}")
        return check
    if verified_checksum and check.checksum != verified_checksum:
        check.problems.append(
            f"{name}: its zip records CRC-32s {check.checksum}, but it passed verification with "
            f"{verified_checksum}: its content was replaced with size and mtime unchanged")
    layout = []
    if windows.dtype != np.float32 or labels.dtype != np.float32:
        layout.append(f"{name}: dtypes {windows.dtype}/{labels.dtype}, expected float32")
    if len(windows.shape) != 3 or windows.shape[1:] != expected_tail or windows.shape[0] == 0:
        layout.append(f"{name}: windows shape {windows.shape}, expected (n>0, *{expected_tail})")
    if labels.shape != (windows.shape[0], config.window_samples):
        layout.append(f"{name}: labels shape {labels.shape} does not match windows "
                      f"{windows.shape}")
    if layout:
        check.problems += layout
        return check
    rules = {windows.member: _WindowRules(config.clip_sigma), labels.member: _LabelRules()}
    # In file order (the writer puts windows first), so the whole file is one sequential read.
    for member in sorted((windows, labels), key=lambda m: m.start):
        found = rules[member.member]
        try:
            row_bytes = member.data_bytes // member.shape[0]
            for first, chunk in _numbered(read_member_chunks(
                    path, member, CHUNK_BYTES // row_bytes)):
                found.check(first, chunk)
        except NpzChecksumError as exc:
            found.crc_problem = exc.detail
        except (NpzFormatError, OSError) as exc:
            check.problems.append(f"{name}: unreadable: {exc}")
            return check
        check.bytes_read += member.size
        check.problems += [f"{name}: {line}" for line in found.lines()]
    check.windows = windows.shape[0]
    return check


def verify_cache_file(path: Path, config: CacheConfig, verified_checksum: str = "",
                      written: ContinuousChecksums | None = None) -> FileCheck:
    """:func:`verify_npz_file` or :func:`verify_continuous_file`, by the file's layout."""
    if layout_of(Path(path).name) == CONTINUOUS:
        return verify_continuous_file(path, config, verified_checksum, written)
    return verify_npz_file(path, config, verified_checksum)


def verify_continuous_file(path: Path, config: CacheConfig, verified_checksum: str = "",
                           written: ContinuousChecksums | None = None) -> FileCheck:
    """Check one continuous cache file (``<stem>_data.npy`` and its ``_labels.npy``): dtypes,
    shapes, every byte against the CRC-32 recorded when the files were written, and every
    sample's value, in one sequential read of each file.

    Parameters
    ----------
    path : Path
        The data file.
    config : CacheConfig
        Its channels, window and stride (samples) and clip range (sigma).
    verified_checksum : str, optional
        The checksum the file passed with before (:attr:`FileCheck.checksum`); "" compares none.
    written : ContinuousChecksums, optional
        The CRC-32s the build recorded when it wrote the files; ``None`` compares none.

    Returns
    -------
    FileCheck
        Problems name the window(s) holding a bad sample, one line each, starting with the name.
    """
    path = Path(path)
    name = path.name
    check = FileCheck()
    try:
        data, labels = open_continuous(path)
    except (NpzFormatError, OSError, ValueError) as exc:
        check.problems.append(f"{name}: unreadable: {exc}")
        return check
    n_samples, n_channels = data.shape
    window, stride = config.window_samples, config.stride_samples
    n_windows = count_windows(n_samples, config)
    if n_channels != len(config.channels) or n_windows == 0:
        check.problems.append(f"{name}: data shape {data.shape}, expected (n>={window}, "
                              f"{len(config.channels)})")
        return check
    data_offset, labels_offset = data.offset, labels.offset
    del data, labels  # read below as plain files: one sequential pass each
    limit = config.clip_sigma + 1e-4  # float32 rounding of a value clipped at the limit
    not_finite, outside, not_binary = [], [], []
    largest = 0.0
    try:
        data_crc = _scan_npy(path, data_offset, n_channels * 4, np.float32, check,
                             lambda first, rows: _bad_samples(first, rows, limit, not_finite,
                                                              outside))
        labels_path = path.parent / labels_name(name)
        labels_crc = _scan_npy(labels_path, labels_offset, 1, np.uint8, check,
                               lambda first, rows: not_binary.extend(
                                   (first + np.flatnonzero(rows > 1)).tolist()))
    except OSError as exc:
        check.problems.append(f"{name}: unreadable: {exc}")
        return check
    computed = ContinuousChecksums(data=data_crc, labels=labels_crc)
    check.checksum = computed.to_text()
    if outside:
        largest = float(np.abs(np.load(path, mmap_mode="r")[outside[:_LISTED]]).max())
    findings = []
    geometry = (window, stride, n_windows)
    if not_finite:
        windows = _windows_of(not_finite, *geometry)
        findings.append(f"{_windows(windows)} {_verb(windows, 'has', 'have')} NaN/Inf")
    if outside:
        windows = _windows_of(outside, *geometry)
        findings.append(f"{_windows(windows)} {_verb(windows, 'exceeds', 'exceed')} "
                        f"+-{config.clip_sigma} sigma (|value| up to {largest:.6g})")
    if not_binary:
        findings.append(f"labels of {_windows(_windows_of(not_binary, *geometry))} are not "
                        "binary")
    if written is not None and not findings:
        for part, stored, read in (("data", written.data, data_crc),
                                   ("labels", written.labels, labels_crc)):
            if stored != read:
                findings.append(f"{part} fails its CRC-32 check (stored {stored:08x}, read "
                                f"{read:08x}): its bytes changed after it was written")
    if verified_checksum and check.checksum != verified_checksum and not findings:
        findings.append(f"its checksums are {check.checksum}, but it passed verification with "
                        f"{verified_checksum}: its content was replaced with size and mtime "
                        "unchanged")
    check.problems += [f"{name}: {line}" for line in findings]
    check.windows = n_windows
    return check


def _scan_npy(path: Path, offset: int, row_bytes: int, dtype, check: FileCheck,
              on_rows) -> int:
    """CRC-32 of a whole ``.npy`` file, handing its rows to ``on_rows(first_row, rows)`` in
    chunks (flat for one-byte rows) as they are read."""
    rows_per_chunk = max(1, CHUNK_BYTES // row_bytes)
    buffer = bytearray(rows_per_chunk * row_bytes)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as fh:
        header = fh.read(offset)
        crc = zlib.crc32(header)
        check.bytes_read += len(header)
        first = 0
        while True:
            n = 0
            while n < len(buffer):  # a short read (network file systems) must not split a row
                got = fh.readinto(view[n:])
                if not got:
                    break
                n += got
            if not n:
                return crc
            crc = zlib.crc32(view[:n], crc)
            check.bytes_read += n
            whole = n - n % row_bytes
            rows = np.frombuffer(buffer, dtype=dtype, count=whole // np.dtype(dtype).itemsize)
            if row_bytes > 1:
                rows = rows.reshape(-1, row_bytes // np.dtype(dtype).itemsize)
            on_rows(first, rows)
            first += len(rows)


def _bad_samples(first: int, rows: np.ndarray, limit: float, not_finite: list[int],
                 outside: list[int]) -> None:
    inside = (rows.max(axis=1) <= limit) & (rows.min(axis=1) >= -limit)
    for row in np.flatnonzero(~inside).tolist():
        (outside if np.isfinite(rows[row]).all() else not_finite).append(first + row)


def _windows_of(samples: list[int], window: int, stride: int, n_windows: int) -> list[int]:
    """The windows that hold any of ``samples`` (sample indices, ascending)."""
    found: set[int] = set()
    for sample in samples:
        low = max(0, -(-(sample - window + 1) // stride))
        found.update(range(low, min(n_windows - 1, sample // stride) + 1))
    return sorted(found)


def _numbered(chunks) -> Iterator[tuple[int, np.ndarray]]:
    """``(index of the chunk's first row, chunk)``."""
    first = 0
    for chunk in chunks:
        yield first, chunk
        first += len(chunk)


class _MemberRules:
    """Value findings of one member, window by window, and its CRC-32 finding."""

    def __init__(self) -> None:
        self.crc_problem = ""

    def findings(self) -> list[str]:
        raise NotImplementedError

    def lines(self) -> list[str]:
        """The value findings or, when there are none, the CRC-32 mismatch."""
        return self.findings() or ([self.crc_problem] if self.crc_problem else [])


class _WindowRules(_MemberRules):
    """Every window finite and inside the clip range."""

    def __init__(self, clip_sigma: float):
        super().__init__()
        self.clip_sigma = clip_sigma
        self.limit = clip_sigma + 1e-4  # float32 rounding of a value clipped at the limit
        self.not_finite: list[int] = []
        self.outside: list[int] = []
        self.largest = 0.0

    def check(self, first: int, chunk: np.ndarray) -> None:
        flat = chunk.reshape(len(chunk), -1)
        # max and min need no temporary the size of the chunk (abs would), and both propagate
        # NaN, so a window is flagged by one comparison unless every value is in range.
        inside = (flat.max(axis=1) <= self.limit) & (flat.min(axis=1) >= -self.limit)
        for row in np.flatnonzero(~inside).tolist():
            values = flat[row]
            if not np.isfinite(values).all():
                self.not_finite.append(first + row)
            else:
                self.outside.append(first + row)
                self.largest = max(self.largest, float(np.abs(values).max()))

    def findings(self) -> list[str]:
        lines = []
        if self.not_finite:
            lines.append(f"{_windows(self.not_finite)} {_verb(self.not_finite, 'has', 'have')} "
                         "NaN/Inf")
        if self.outside:
            lines.append(f"{_windows(self.outside)} {_verb(self.outside, 'exceeds', 'exceed')} "
                         f"+-{self.clip_sigma} sigma (|value| up to {self.largest:.6g})")
        return lines


class _LabelRules(_MemberRules):
    """Every label exactly 0 or 1."""

    def __init__(self) -> None:
        super().__init__()
        self.not_binary: list[int] = []
        self.example = 0.0

    def check(self, first: int, chunk: np.ndarray) -> None:
        binary = ((chunk == 0) | (chunk == 1)).all(axis=1)
        bad = np.flatnonzero(~binary).tolist()
        if bad and not self.not_binary:
            row = chunk[bad[0]]
            self.example = float(row[(row != 0) & (row != 1)][0])
        self.not_binary += [first + row for row in bad]

    def findings(self) -> list[str]:
        if not self.not_binary:
            return []
        return [f"labels of {_windows(self.not_binary)} are not binary "
                f"({self.example:g} among them)"]


def _windows(indices: list[int]) -> str:
    """``window 3``, ``windows 3, 4, 5`` or ``windows 3, 4, 5, 6, 7 and 12 more``."""
    if len(indices) == 1:
        return f"window {indices[0]}"
    listed = ", ".join(map(str, indices[:_LISTED]))
    more = f" and {len(indices) - _LISTED} more" if len(indices) > _LISTED else ""
    return f"windows {listed}{more}"


def _verb(indices: list[int], one: str, many: str) -> str:
    return one if len(indices) == 1 else many


def sample_size(n_verified: int, fraction: float = SAMPLE_FRACTION) -> int:
    """How many of ``n_verified`` already-verified files a run re-verifies: the fraction, rounded
    up (so at least one whenever there is one)."""
    return min(n_verified, math.ceil(n_verified * fraction))


def verify_split(cache_dir: Path, config: CacheConfig, *, verify_all: bool = False,
                 seed: int | str | None = None, fraction: float = SAMPLE_FRACTION,
                 recorded: Iterable[tuple[str, str]] | None = None) -> VerifyReport:
    """Check a split's NPZs against the ledger and verify the ones whose content is unverified.

    Parameters
    ----------
    cache_dir
        The cache split folder (NPZs and ``_ledger.sqlite``).
    config
        The configuration the files must have been built with (shapes, clip range).
    verify_all
        Open and check every NPZ, not only the unverified ones and the sample.
    seed
        Seed of the random sample (any ``random.Random`` seed); ``None`` draws a fresh one.
    fraction
        Share of the already-verified, unchanged files to re-verify (see :func:`sample_size`).
    recorded
        ``(name, fingerprint)`` of the NPZs as a build of the same run left them
        (:func:`~eeg_assets.lib.cache.discovery.recorded_npz`), which the build checked against
        the ledger moments ago; by default each NPZ is stat-ed.

    Passes and failures are recorded in the ledger.
    """
    cache_dir = Path(cache_dir)
    report = VerifyReport(verify_all=verify_all)
    ledger = Ledger(cache_dir)
    entries = {e.npz_name: e for e in ledger.entries().values() if e.status == BUILT}
    fingerprints = dict(recorded) if recorded is not None else cache_files_on_disk(cache_dir)
    on_disk = {name: cache_dir / name for name in fingerprints}
    report.files = len(on_disk)
    report.missing = sorted(set(entries) - set(on_disk))
    for name in report.missing:
        report.problems.append(f"{name}: recorded as built but missing from {cache_dir}")

    version = config.version()  # a hash of the whole config: once, not per file
    unverified, verified_before = [], []
    ledger_problems: dict[str, list[str]] = {}
    for name, path in sorted(on_disk.items()):
        entry = entries.get(name)
        fingerprint = fingerprints[name]
        if entry is None:
            ledger_problems[name] = [f"{name}: not produced by build-cache (no ledger entry)"]
        elif fingerprint != entry.npz_fingerprint:
            ledger_problems[name] = [f"{name}: changed since it was built"]
        elif entry.config_version != version:
            ledger_problems[name] = [f"{name}: built with config {entry.config_version}, "
                                     f"current is {version}"]
        if entry is not None and entry.verified_fingerprint == fingerprint \
                and name not in ledger_problems:
            verified_before.append(name)
        else:
            unverified.append(name)
    if not verify_all:
        report.sampled = sorted(random.Random(seed).sample(
            verified_before, sample_size(len(verified_before), fraction)))
    to_open = unverified + (verified_before if verify_all else report.sampled)

    passed: dict[str, str] = {}
    checksums: dict[str, str] = {}
    unchanged = set(verified_before)
    for name in sorted(to_open):
        entry = entries.get(name)
        # Only a file whose size and mtime are those it passed at must hold the content it
        # passed with; any other is checked as new.
        recorded_checksum = entry.verified_checksum if name in unchanged else ""
        written = recorded_checksums(entry.details) if entry is not None else None
        check = verify_cache_file(on_disk[name], config, recorded_checksum, written)
        problems = ledger_problems.get(name, []) + check.problems
        report.verified.append(name)
        report.windows_checked += check.windows
        report.bytes_read += check.bytes_read
        report.problems.extend(problems)
        if problems:
            report.failed.append(name)
        elif entry is not None:
            passed[entry.source] = entry.npz_fingerprint
            checksums[entry.source] = check.checksum
    failed_sources = [entries[name].source for name in report.failed if name in entries]
    if passed or failed_sources:
        ledger.record_verification(passed, failed_sources, checksums)
    return report


def format_verify_report(report: VerifyReport, cache_dir: Path) -> list[str]:
    """The ``verify-cache`` summary: what was opened, the sample, then every problem."""
    fresh = len(report.verified) - len(report.sampled)
    how = ("every file" if report.verify_all else
           f"{fresh} new or changed, {len(report.sampled)} sampled from the verified ones")
    kind = file_kind([*report.verified, *report.missing, *report.failed])
    lines = [f"[verify-cache] {cache_dir}: {report.files} {kind} file(s), opened "
             f"{len(report.verified)} ({how}), {report.windows_checked} windows checked"]
    if report.sampled:
        lines.append(f"[verify-cache] sampled: {', '.join(report.sampled)}")
    lines += [f"  problem: {problem}" for problem in report.problems]
    return lines


def verify_cache_command(cache_dir: Path, verify_all: bool = False,
                         config: CacheConfig | None = None) -> int:
    """``python -m eeg_assets verify-cache``: 0 when every check passed, 1 naming each problem."""
    import sys

    from eeg_assets.lib.config import DEFAULT_CONFIG

    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        print(f"error: cache folder {cache_dir} does not exist", file=sys.stderr)
        return 1
    report = verify_split(cache_dir, config or DEFAULT_CONFIG, verify_all=verify_all)
    for line in format_verify_report(report, cache_dir):
        print(line)
    if report.files == 0:
        print(f"error: no NPZ files in {cache_dir}", file=sys.stderr)
        return 1
    if report.problems:
        names = sorted(report.failed + report.missing)
        print(f"error: {len(report.problems)} problem(s) in {len(names)} file(s) of {cache_dir}: "
              f"{', '.join(names)}", file=sys.stderr)
        return 1
    print(f"[verify-cache] ok: all {len(report.verified)} opened file(s) passed")
    return 0
