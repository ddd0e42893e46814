"""Modal Volumes played by folders, for the stand-in ``modal`` CLI (``stand_in_modal.py``).

A folder holds a volume's committed state. The two sides of a real volume are played apart:

* :class:`HostVolume` is the client API a local entrypoint uses (``modal.Volume`` outside a
  container): ``batch_upload`` (all files of a batch land together when the block ends, or none),
  ``read_file``, ``remove_file``. Uploaded files get the upload's time, in whole seconds.
* :class:`Mount` is one container's view: a private copy of the committed state taken when the
  container starts (hard links for the large files this project replaces but never edits in
  place: ``.npz`` and ``.edf``). Writes stay private until ``commit()``, which copies the
  container's changes (new, changed and removed files) into the committed folder and does *not*
  show the container anyone else's commits (Modal 1.6.4 reloads after a commit only when the
  server does not answer ``skip_reload``). ``reload()`` shows it the latest committed state;
  like Modal's, it refuses while the container has files on the volume open, and (stricter than
  Modal, which may commit them implicitly) while it has uncommitted changes.
* No mtime survives: a committed file gets the time of the commit (not its writer's), an
  uploaded file the time of the upload, and a ``restamp`` mount (the raw volume's) shows every
  file with the time it was mounted. Fingerprints taken by ``stat`` on a volume are not stable.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: Files hard-linked into a container's copy (never written in place by the apps).
LINKED_SUFFIXES = (".npz", ".edf")


def _place(source: Path | io.IOBase, target: Path, mtime_ns: int) -> None:
    """Copy ``source`` to ``target`` through a temporary name, with ``mtime_ns``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".standin", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            if isinstance(source, Path):
                with open(source, "rb") as src:
                    shutil.copyfileobj(src, out)
            else:
                shutil.copyfileobj(source, out)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 is not what a volume's files have
        os.utime(tmp, ns=(mtime_ns, mtime_ns))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class HostVolume:
    """``modal.Volume`` as a local entrypoint uses it, over the committed folder."""

    def __init__(self, committed: Path):
        self.committed = Path(committed)
        self.committed.mkdir(parents=True, exist_ok=True)

    def _path(self, remote: str) -> Path:
        return self.committed / str(remote).lstrip("/")

    @contextmanager
    def batch_upload(self, force: bool = False) -> Iterator[_Batch]:
        batch = _Batch()
        yield batch
        targets = [(source, self._path(remote)) for source, remote in batch.files]
        if not force:
            existing = [str(t) for _, t in targets if t.exists()]
            if existing:
                raise FileExistsError(f"{existing[0]} already exists on the volume")
        staged = self.committed.parent / f".{self.committed.name}.upload"
        shutil.rmtree(staged, ignore_errors=True)
        now = time.time_ns()
        try:
            for i, (source, _) in enumerate(targets):  # read everything first: all or nothing
                _place(source, staged / str(i), now)
            for i, (_, target) in enumerate(targets):
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged / str(i), target)
        finally:
            shutil.rmtree(staged, ignore_errors=True)

    def read_file(self, path: str) -> Iterator[bytes]:
        target = self._path(path)
        if not target.is_file():
            raise FileNotFoundError(f"No such file in the volume: {path}")
        with open(target, "rb") as fh:
            yield from iter(lambda: fh.read(1 << 20), b"")

    def remove_file(self, path: str, recursive: bool = False) -> None:
        target = self._path(path)
        if target.is_dir() and recursive:
            shutil.rmtree(target)
        elif target.is_file():
            target.unlink()
        else:
            raise FileNotFoundError(f"No such file in the volume: {path}")


class _Batch:
    def __init__(self):
        self.files: list[tuple[Path | io.IOBase, str]] = []

    def put_file(self, local_file, remote_path: str, mode: int | None = None) -> None:
        self.files.append((Path(local_file) if isinstance(local_file, (str, os.PathLike))
                           else local_file, str(remote_path)))


class Mount:
    """One container's copy of a volume at ``path``; ``commit``/``reload`` as in Modal."""

    def __init__(self, committed: Path, path: Path, restamp: bool = False):
        self.committed, self.path, self.restamp = Path(committed), Path(path), restamp
        self.baseline_file = self.path.parent / f"{self.path.name}.baseline.json"

    @classmethod
    def for_process(cls, committed: Path, pid: int | None = None,
                    restamp: bool = False) -> Mount:
        """The mount of process ``pid`` (this one by default), beside the committed folder."""
        committed = Path(committed)
        return cls(committed, Path(f"{committed}.mounts") / str(pid or os.getpid()), restamp)

    def mount(self) -> Mount:
        self._snapshot()
        return self

    def unmount(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        self.baseline_file.unlink(missing_ok=True)

    def _files(self, root: Path) -> dict[str, list[int]]:
        files = {}
        for path in root.rglob("*"):
            try:
                if path.is_file() and not path.is_symlink():
                    st = path.stat()
                    files[path.relative_to(root).as_posix()] = [st.st_size, st.st_mtime_ns,
                                                                st.st_ino]
            except FileNotFoundError:
                pass  # replaced or removed while listed
        return files

    def _snapshot(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir(parents=True)
        for folder in sorted(p for p in self.committed.rglob("*") if p.is_dir()):
            (self.path / folder.relative_to(self.committed)).mkdir(parents=True, exist_ok=True)
        now = time.time_ns()
        for rel in self._files(self.committed):
            source, target = self.committed / rel, self.path / rel
            try:
                if source.suffix in LINKED_SUFFIXES and not self.restamp:
                    os.link(source, target)
                else:
                    shutil.copy2(source, target)
                    if self.restamp:
                        os.utime(target, ns=(now, now))
            except FileNotFoundError:
                pass  # removed by another container's commit since it was listed
        self._rebaseline()

    def _rebaseline(self) -> None:
        self.baseline_file.write_text(json.dumps(self._files(self.path)))

    def changes(self) -> tuple[list[str], list[str]]:
        """Files written (new or changed) and files removed since the last snapshot."""
        written, removed, _, _ = self._diff()
        return written, removed

    def _diff(self):
        baseline = json.loads(self.baseline_file.read_text())
        current = self._files(self.path)
        written = sorted(rel for rel, stat in current.items() if baseline.get(rel) != stat)
        removed = sorted(rel for rel in baseline if rel not in current)
        return written, removed, baseline, current

    def commit(self) -> None:
        written, removed, baseline, current = self._diff()
        for folder in (p for p in self.path.rglob("*") if p.is_dir()):
            (self.committed / folder.relative_to(self.path)).mkdir(parents=True, exist_ok=True)
        now = time.time_ns()
        for rel in written:
            try:
                _place(self.path / rel, self.committed / rel, now)
            except FileNotFoundError:
                continue  # renamed or removed since listed: the next commit sees where it went
            baseline[rel] = current[rel]  # changed again since listed: committed again next time
        for rel in removed:
            (self.committed / rel).unlink(missing_ok=True)
            baseline.pop(rel, None)
        # No reload: the container still sees its own view, not other containers' commits.
        self.baseline_file.write_text(json.dumps(baseline))

    def reload(self) -> None:
        opened = self.open_files()
        if opened:
            raise RuntimeError(f"there are open files preventing the operation: {opened[0]}")
        written, removed = self.changes()
        if written or removed:
            raise RuntimeError(f"stand-in volume: reload() with uncommitted changes "
                               f"({(written + removed)[0]}, ...): commit() first")
        self._snapshot()

    def open_files(self) -> list[str]:
        """Files under this mount that this process holds open or memory-mapped (Linux
        ``/proc``): Modal's reload refuses both."""
        prefix, found = f"{self.path}/", []
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if target.startswith(prefix):
                found.append(target)
        with open("/proc/self/maps") as maps:
            found += [line.split(None, 5)[5].strip() for line in maps
                      if len(line.split(None, 5)) == 6 and line.split(None, 5)[5].startswith(prefix)]
        return found
