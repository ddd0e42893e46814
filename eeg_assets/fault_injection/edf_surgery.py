"""EDF and text surgery for the fault catalogue, independent of pyedflib: the header is read and
patched as bytes, so a damaged file is exactly what the case says."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_SIGNAL_FIELDS = (("label", 16), ("transducer", 80), ("dimension", 8), ("physical_min", 8),
                  ("physical_max", 8), ("digital_min", 8), ("digital_max", 8), ("prefilter", 80),
                  ("samples_per_record", 8), ("reserved", 32))
_MAIN_FIELDS = {"header_bytes": (184, 8), "n_records": (236, 8), "record_duration": (244, 8),
                "n_signals": (252, 4)}


@dataclass(frozen=True)
class EdfLayout:
    """Where things are in an EDF file (16-bit samples)."""

    n_signals: int
    n_records: int
    header_bytes: int
    labels: tuple[str, ...]
    samples_per_record: tuple[int, ...]

    @classmethod
    def read(cls, path: Path) -> EdfLayout:
        raw = Path(path).read_bytes()
        ns = int(raw[252:256])
        spr_offset = cls.field_offset_for(ns, "samples_per_record", 0)
        return cls(
            n_signals=ns, n_records=int(raw[236:244]), header_bytes=int(raw[184:192]),
            labels=tuple(raw[256 + 16 * i:256 + 16 * (i + 1)].decode().strip() for i in range(ns)),
            samples_per_record=tuple(int(raw[spr_offset + 8 * i:spr_offset + 8 * (i + 1)])
                                     for i in range(ns)),
        )

    @staticmethod
    def field_offset_for(ns: int, name: str, signal_index: int) -> int:
        offset = 256
        for field_name, width in _SIGNAL_FIELDS:
            if field_name == name:
                return offset + width * signal_index
            offset += width * ns
        raise KeyError(name)

    def field(self, name: str, signal_index: int) -> tuple[int, int]:
        return self.field_offset_for(self.n_signals, name, signal_index), dict(_SIGNAL_FIELDS)[name]

    def index(self, label: str) -> int:
        return self.labels.index(label)

    @property
    def record_bytes(self) -> int:
        return 2 * sum(self.samples_per_record)

    @property
    def size(self) -> int:
        return self.header_bytes + self.n_records * self.record_bytes


def _write_at(path: Path, offset: int, width: int, text: str) -> None:
    data = text.encode("ascii").ljust(width)
    if len(data) != width:
        raise ValueError(f"{text!r} does not fit in {width} bytes")
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(data)


def set_header_field(path: Path, name: str, value: str) -> None:
    """Overwrite a main-header field (``n_records``, ``record_duration``, ...)."""
    _write_at(path, *_MAIN_FIELDS[name], value)


def set_signal_field(path: Path, label: str, name: str, value: str) -> None:
    """Overwrite one signal's header field (``label``, ``physical_max``, ...)."""
    layout = EdfLayout.read(path)
    _write_at(path, *layout.field(name, layout.index(label)), value)


def zero_signal(path: Path, label: str) -> None:
    """Set every sample of one signal to digital 0 (a flat channel), record by record."""
    layout = EdfLayout.read(path)
    i = layout.index(label)
    start = 2 * sum(layout.samples_per_record[:i])
    width = 2 * layout.samples_per_record[i]
    with open(path, "r+b") as fh:
        for record in range(layout.n_records):
            fh.seek(layout.header_bytes + record * layout.record_bytes + start)
            fh.write(b"\0" * width)


def truncate(path: Path, size: int) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(size)


def edit_lines(path: Path, edit: Callable[[list[str]], list[str]]) -> None:
    """Rewrite a text file line by line (``edit`` gets and returns the lines, without newlines)."""
    lines = Path(path).read_text().splitlines()
    Path(path).write_text("\n".join(edit(lines)) + "\n")


def replace_line(number: int, text: str) -> Callable[[list[str]], list[str]]:
    def edit(lines: list[str]) -> list[str]:
        lines[number - 1] = text
        return lines
    return edit
