"""The per-split build ledger: what was built from which input, with which config.

One SQLite file per cache split (``_ledger.sqlite``). For every source recording it records the
input fingerprints, the config version, the outcome (built, too short, quarantined with a reason),
the warnings a built recording was built with, the per-window facts that the dataset index and the
manifest need, so neither ever has to reopen an NPZ, and the NPZ fingerprint and content checksum
(its members' CRC-32s) at which the file last passed the verification
(:mod:`eeg_assets.lib.cache.verify`), so each content is verified once. SQLite gives atomic
per-file updates: a build killed at any point leaves a ledger that describes exactly the files
whose NPZ was renamed into place before the kill.

A ledger written before a column existed gets it added (with its empty default) when it is opened.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

LEDGER_NAME = "_ledger.sqlite"

BUILT = "built"
TOO_SHORT = "too_short"
QUARANTINED = "quarantined"
#: Output could not be written (disk full, permissions): retried on every run.
FAILED = "failed"


class LedgerError(Exception):
    """The ledger cannot be used (damaged, unwritable, disk full); the message says what to do.

    Nothing in the cache is deleted when it is raised.
    """

    def __init__(self, path: Path, cause: BaseException | str):
        text = str(cause)
        if isinstance(cause, str):
            advice = ""
        elif "malformed" in text or "not a database" in text:
            advice = (f": the file is damaged. Nothing was deleted. Move it aside (`mv {path} "
                      f"{path}.damaged`), then run `python -m eeg_assets adopt-cache --data-dir "
                      f"<split folder> --cache-dir {path.parent}` to take back the NPZs that "
                      "verify (or delete the split's NPZs to rebuild it)")
        elif "readonly" in text or "read-only" in text or isinstance(cause, PermissionError) \
                or "unable to open" in text:
            advice = f": the cache folder {path.parent} must be writable by this user"
        elif "full" in text or getattr(cause, "errno", None) == 28:
            advice = f": the disk holding {path.parent} is full; free some space and run again"
        else:
            advice = ""
        super().__init__(f"build ledger {path}: {text}{advice}")
        self.path = path


@dataclass
class FileFingerprint:
    """Cheap identity of a file's content: size and modification time (as ``make`` uses)."""

    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> FileFingerprint:
        st = os.stat(path)
        return cls(st.st_size, st.st_mtime_ns)

    @classmethod
    def parse(cls, text: str) -> FileFingerprint:
        """The inverse of ``str()``: ``"size:mtime_ns"``."""
        size, mtime_ns = text.split(":")
        return cls(int(size), int(mtime_ns))

    def __str__(self) -> str:
        return f"{self.size}:{self.mtime_ns}"


@dataclass
class RecordingEntry:
    """Outcome of building one source recording."""

    source: str                      # EDF path relative to the split's data dir (POSIX)
    stem: str
    status: str                      # BUILT | TOO_SHORT | QUARANTINED | FAILED
    config_version: str
    edf_fingerprint: str
    annotation_fingerprint: str = ""
    reason: str = ""                 # why it was quarantined (or is too short)
    npz_name: str = ""               # "<stem>_windows.npz" when BUILT
    npz_fingerprint: str = ""        # of the NPZ as written, to detect changes behind our back
    n_windows: int = 0
    #: Per window: how many of its label samples are 1 (exact; fraction = count / window_samples).
    seizure_samples: list[int] = field(default_factory=list)
    details: dict = field(default_factory=dict)  # rates, durations, Fz/Pz method
    #: Conditions the recording was built despite (e.g. a seizure clipped at the signal's end).
    warnings: list[str] = field(default_factory=list)
    #: ``npz_fingerprint`` at which the NPZ last passed verification; "" = never (or it failed).
    #: A rebuild writes a new entry, so new content is always verified again.
    verified_fingerprint: str = ""
    #: The content checksum that pass was made with: the members' CRC-32s as the NPZ's zip
    #: records them (``"labels.npy:<hex>,windows.npy:<hex>"``); "" = none recorded. A sampled
    #: file whose zip records others was replaced with its size and mtime kept.
    verified_checksum: str = ""

    @property
    def input_fingerprint(self) -> str:
        return f"{self.edf_fingerprint}|{self.annotation_fingerprint}|{self.config_version}"


_COLUMNS = tuple(RecordingEntry.__dataclass_fields__)
_JSON_COLUMNS = {"seizure_samples", "details", "warnings"}
#: Columns added after the first ledgers were written, with the value their rows get.
_ADDED_COLUMNS = {"warnings": "[]", "verified_fingerprint": "", "verified_checksum": ""}


class Ledger:
    """Read and update the ledger of one cache split directory.

    Each call opens its own connection, unless the ledger is used as a context manager: then one
    connection is held until the block ends, which a build does. The ledger is in WAL mode with
    ``synchronous=NORMAL``, so a commit does not fsync: on ext4 an fsync also flushes every NPZ
    still in the page cache, which cost a third of a build's time. A killed process still loses
    nothing committed; an OS crash may lose the last commits but never corrupts the file, and an
    NPZ whose entry was lost is unowned and rebuilt by the next build.
    """

    def __init__(self, cache_dir: Path):
        self.cache_dir = Path(cache_dir)
        self.path = self.cache_dir / LEDGER_NAME
        self._held: sqlite3.Connection | None = None

    def exists(self) -> bool:
        return self.path.exists()

    def __enter__(self) -> Ledger:
        self._held = self._open()
        return self

    def __exit__(self, *exc) -> None:
        held, self._held = self._held, None
        held.close()

    def _open(self) -> sqlite3.Connection:
        with self._translated():
            return self._open_raw()

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """SQLite's and the OS's errors as a :class:`LedgerError` naming the file and the fix."""
        try:
            yield
        except LedgerError:
            raise
        except (sqlite3.DatabaseError, OSError) as exc:
            raise LedgerError(self.path, exc) from exc

    def _open_raw(self) -> sqlite3.Connection:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=60)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS recordings ("
                + ", ".join(f"{c} TEXT" if c != "source" else "source TEXT PRIMARY KEY"
                            for c in _COLUMNS)
                + ")")
            _add_missing_columns(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with self._translated():
            if self._held is not None:
                with self._held:
                    yield self._held
                return
            with closing(self._open()) as conn, conn:
                yield conn

    def entries(self) -> dict[str, RecordingEntry]:
        if not self.exists():
            return {}
        with self._connect() as conn:
            rows = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM recordings").fetchall()
        return {row[0]: _from_row(row) for row in rows}

    def input_facts(self) -> dict[str, tuple[str, float | None]]:
        """``{source: ("<edf fingerprint>|<annotation fingerprint>", duration_s or None)}``.

        What a watcher of the raw folder compares with it, without decoding the per-window facts
        (a tenth of the cost of :meth:`entries`).
        """
        if not self.exists():
            return {}
        with self._connect() as conn:
            rows = conn.execute("SELECT source, edf_fingerprint, annotation_fingerprint, details "
                                "FROM recordings").fetchall()
        return {source: (f"{edf}|{annotation}", json.loads(details).get("duration_s"))
                for source, edf, annotation, details in rows}

    def put(self, entry: RecordingEntry) -> None:
        with self._connect() as conn:
            conn.execute(
                f"INSERT OR REPLACE INTO recordings ({', '.join(_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(_COLUMNS))})", _to_row(entry))

    def remove(self, sources: Iterable[str]) -> None:
        with self._connect() as conn:
            conn.executemany("DELETE FROM recordings WHERE source = ?", [(s,) for s in sources])

    def record_verification(self, passed: Mapping[str, str], failed: Iterable[str],
                            checksums: Mapping[str, str] | None = None) -> None:
        """Record verification outcomes: ``passed`` maps a source to the NPZ fingerprint it passed
        at, ``checksums`` (optional) a source to the content checksum it passed with, ``failed``
        lists sources whose NPZ failed (they lose any earlier mark and checksum).

        A pass is recorded only while the entry still describes that fingerprint, so a file
        rebuilt during the verification is not marked verified.
        """
        checksums = checksums or {}
        with self._connect() as conn:
            conn.executemany(
                "UPDATE recordings SET verified_fingerprint = ?, verified_checksum = ? "
                "WHERE source = ? AND npz_fingerprint = ?",
                [(fp, checksums.get(source, ""), source, fp) for source, fp in passed.items()])
            conn.executemany("UPDATE recordings SET verified_fingerprint = '', "
                             "verified_checksum = '' WHERE source = ?",
                             [(source,) for source in failed])


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    present = {row[1] for row in conn.execute("PRAGMA table_info(recordings)")}
    for column, default in _ADDED_COLUMNS.items():
        if column in present:
            continue
        try:
            conn.execute(f"ALTER TABLE recordings ADD COLUMN {column} TEXT DEFAULT '{default}'")
        except sqlite3.OperationalError as exc:
            if "duplicate column" not in str(exc):  # another process added it just now
                raise


def _to_row(entry: RecordingEntry) -> tuple:
    data = asdict(entry)
    return tuple(json.dumps(data[c]) if c in _JSON_COLUMNS else str(data[c]) for c in _COLUMNS)


def _from_row(row: tuple) -> RecordingEntry:
    data = dict(zip(_COLUMNS, row))
    for c in _JSON_COLUMNS:
        data[c] = json.loads(data[c])
    data["n_windows"] = int(data["n_windows"])
    return RecordingEntry(**data)


def built_entries(cache_dir: Path) -> list[RecordingEntry]:
    """Entries with an NPZ, in the stable order used by the index and the manifest (NPZ name)."""
    entries = [e for e in Ledger(cache_dir).entries().values() if e.status == BUILT]
    return sorted(entries, key=lambda e: e.npz_name)
