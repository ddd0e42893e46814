"""Reading TUSZ EDF files with pyedflib, one channel at a time.

Quirk handled: some TUSZ headers write the start date as ``01:01:85`` (colons) at bytes 168-175,
which pyedflib refuses. The original is never modified: the header is repaired in a temporary
copy, and the repair is recorded with the outputs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pyedflib

_DATE_FIELD = slice(168, 176)
_TIME_FIELD = slice(176, 184)
EDF_HEADER_BYTES = 256
_MICROVOLTS_PER_UNIT = {"uv": 1.0, "µv": 1.0, "mv": 1e3, "v": 1e6}


class EdfError(ValueError):
    """The EDF file cannot be read as a recording."""


class EdfRecording:
    """An open EDF file. Use as a context manager; read signals with :meth:`read`."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.header_repair = ""
        self._stack = ExitStack()
        try:
            self._reader = self._open()
        except BaseException:
            self._stack.close()
            raise
        self._stack.callback(self._reader.close)
        reader = self._reader
        self.labels: list[str] = [reader.getLabel(i) for i in range(reader.signals_in_file)]
        self.sample_rates: list[float] = [float(reader.getSampleFrequency(i))
                                          for i in range(reader.signals_in_file)]
        self.n_samples: list[int] = [int(n) for n in reader.getNSamples()]
        self.duration_s = float(reader.getFileDuration())

    def _open(self) -> pyedflib.EdfReader:
        size = _file_size(self.path)
        if size < EDF_HEADER_BYTES:
            raise EdfError(f"{self.path.name}: {size} bytes, shorter than an EDF header "
                           f"({EDF_HEADER_BYTES} bytes): truncated or empty file")
        try:
            return pyedflib.EdfReader(str(self.path))
        except OSError as exc:
            message = str(exc)
            if "startdate" not in message and "starttime" not in message:
                raise EdfError(f"{self.path.name}: unreadable EDF: {_pyedflib_reason(message)}") from None
        repaired = self._stack.enter_context(tempfile.TemporaryDirectory(prefix="eeg_assets_edf_"))
        copy = Path(repaired) / "repaired.edf"
        shutil.copyfile(self.path, copy)
        with open(copy, "r+b") as fh:
            header = bytearray(fh.read(EDF_HEADER_BYTES))
            original = bytes(header[_DATE_FIELD] + header[_TIME_FIELD]).decode("ascii", "replace")
            for field in (_DATE_FIELD, _TIME_FIELD):
                header[field] = bytes(header[field]).replace(b":", b".")
            fh.seek(0)
            fh.write(header)
        try:
            reader = pyedflib.EdfReader(str(copy))
        except OSError as exc:
            raise EdfError(f"{self.path.name}: unreadable EDF: {_pyedflib_reason(str(exc))}") from None
        self.header_repair = (f"start date/time {original!r} used ':' separators; "
                              "repaired in a temporary copy")
        return reader

    def read(self, index: int) -> np.ndarray:
        """Physical values of signal ``index`` (float64)."""
        return self._reader.readSignal(index)

    def microvolts_per_unit(self, index: int) -> float:
        """Scale of signal ``index``'s physical unit in uV (1 for uV or an unknown unit)."""
        unit = self._reader.getPhysicalDimension(index).strip().lower()
        return _MICROVOLTS_PER_UNIT.get(unit, 1.0)

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> EdfRecording:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _file_size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError as exc:
        raise EdfError(f"{path.name}: cannot read: {exc.strerror}") from None


def _pyedflib_reason(message: str) -> str:
    # pyedflib prefixes its messages with the path; keep only the reason.
    return message.split(": ", 1)[-1] if ": " in message else message
