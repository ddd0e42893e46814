"""Fault injection: bad inputs made from good files, and the crash, disk-full, concurrency and
staleness scenarios. Shared by ``test_fault_injection.py`` and ``benchmarks/fault_injection.py``.

Every bad input is made at run time from a *good* recording (written with :mod:`edf_factory`):
the good EDF or annotation is copied, then truncated, corrupted, relabelled or renamed. Each
:class:`FaultCase` names the outcome it must get (``quarantined``, ``built`` or ``ignored``) and the
distinctive substring(s) its reason must contain, so a test can fail for a vague or wrong reason
and not only for a missing one.

The whole catalogue is laid out into one split folder next to a few good recordings
(:func:`lay_out_catalogue`), so a single build shows that every bad file is explained while
every good file of the same split is still built. The scenario functions (``*_scenario``) each
return a :class:`ScenarioResult` with the counts the benchmark tabulates and a list of problems
(empty when the platform behaved).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edf_factory import Event, noise_generator, tusz_dir, write_recording

REPO_ROOT = Path(__file__).resolve().parents[1]

#: The good recording every fault starts from: 80 s at 256 Hz, the 19 EEG channels plus one extra
#: signal at the EEG rate and one 1 Hz side channel (21 signals + EDF Annotations), one seizure.
TEMPLATE_SECONDS = 80
TEMPLATE_FS = 256
TEMPLATE_SEIZURE = (20.5, 45.25)
TEMPLATE_EVENTS = (Event(0.0, 20.5, "bckg"), Event(20.5, 45.25, "fnsz"), Event(45.25, 80.0, "bckg"))
#: Line numbers of the template's annotation rows (after 5 comment lines and the column header).
BCKG_LINE, SEIZURE_LINE = 7, 8

QUARANTINED, BUILT, IGNORED, FAILED = "quarantined", "built", "ignored", "failed"


# ------------------------------------------------------------------------------------------------
# EDF surgery (independent of pyedflib: the header is read and patched as bytes)
# ------------------------------------------------------------------------------------------------

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


# ------------------------------------------------------------------------------------------------
# The good recording and the catalogue
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Template:
    edf: Path
    annotation: Path


def write_template(folder: Path, seed: int = 7) -> Template:
    """The good recording every case is made from (written once per test module)."""
    files = write_recording(folder, "template_s001_t000", fs=TEMPLATE_FS,
                            duration_s=TEMPLATE_SECONDS, events=TEMPLATE_EVENTS,
                            extra_labels=["EEG EKG1-REF"], side_labels=["IBI"],
                            generator=noise_generator(seed=seed))
    return Template(files.edf, files.annotation)


@dataclass
class Placed:
    """A copy of the template in the split folder."""

    edf: Path
    annotation: Path
    source: str  # EDF path relative to the split folder, as the ledger records it

    @property
    def stem(self) -> str:
        return self.edf.stem


@dataclass
class CaseContext:
    split_dir: Path
    outside_dir: Path
    template: Template

    def place(self, name: str, *, stem: str | None = None, session: str = "s001_2015") -> Placed:
        """Copy the template to ``<split>/<name>/<session>/01_tcp_ar/<stem>.edf`` (+ .csv_bi)."""
        stem = stem or f"{name}_s001_t000"
        folder = tusz_dir(self.split_dir, name, session)
        folder.mkdir(parents=True, exist_ok=True)
        edf = folder / f"{stem}.edf"
        annotation = folder / f"{stem}.csv_bi"
        shutil.copyfile(self.template.edf, edf)
        shutil.copyfile(self.template.annotation, annotation)
        return Placed(edf, annotation, edf.relative_to(self.split_dir).as_posix())


@dataclass(frozen=True)
class FaultCase:
    name: str
    group: str        # "edf", "annotation", "drop"
    outcome: str      # QUARANTINED, BUILT or IGNORED
    reasons: tuple[str, ...]  # substrings the reason must contain (empty for BUILT)
    description: str
    make: Callable[[CaseContext], str]  # lays the input out; returns its source path
    #: For BUILT cases: (details key, substring) the ledger entry's details must show.
    details: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        return self.name


CATALOGUE: list[FaultCase] = []


def _case(name: str, group: str, outcome: str, *reasons: str, description: str,
          details: tuple[tuple[str, str], ...] = ()):
    def register(make: Callable[[CaseContext], str]) -> Callable[[CaseContext], str]:
        CATALOGUE.append(FaultCase(name, group, outcome, tuple(reasons), description, make,
                                   details))
        return make
    return register


def _damage_case(group: str, name: str, *reasons: str, description: str,
                 outcome: str = QUARANTINED, details: tuple[tuple[str, str], ...] = ()):
    """A case that places a copy of the template and damages it with ``damage(placed)``."""
    def register(damage: Callable[[Placed], None]):
        def make(ctx: CaseContext) -> str:
            placed = ctx.place(name)
            damage(placed)
            return placed.source
        return _case(name, group, outcome, *reasons, description=description,
                     details=details)(make)
    return register


def _edf_fault(name: str, *reasons: str, **kwargs):
    return _damage_case("edf", name, *reasons, **kwargs)


def _annotation_fault(name: str, *reasons: str, **kwargs):
    return _damage_case("annotation", name, *reasons, **kwargs)


# --- EDF ----------------------------------------------------------------------------------------

@_edf_fault("edf-zero-bytes", "0 bytes, shorter than an EDF header",
            description="EDF truncated to 0 bytes")
def _(p: Placed) -> None:
    truncate(p.edf, 0)


@_edf_fault("edf-random-bytes", "unreadable EDF", "not EDF(+) or BDF(+) compliant",
            description="EDF replaced by 64 KiB of random bytes")
def _(p: Placed) -> None:
    p.edf.write_bytes(random.Random(1).randbytes(64 * 1024))


@_edf_fault("edf-truncated-in-header", "truncated in the header", "declares 5888 header bytes",
            description="EDF cut 300 bytes into the signal headers")
def _(p: Placed) -> None:
    truncate(p.edf, 256 + 300)


@_edf_fault("edf-truncated-mid-data", "its header declares 80 data records",
            "only 40 complete records are present",
            description="EDF cut in the middle of data record 41 (a half-finished copy)")
def _(p: Placed) -> None:
    layout = EdfLayout.read(p.edf)
    truncate(p.edf, layout.header_bytes + 40 * layout.record_bytes + 1000)


@_edf_fault("edf-record-count-too-high", "its header declares 90 data records",
            "only 80 complete records are present",
            description="header record count 80 -> 90 (more than the file holds)")
def _(p: Placed) -> None:
    set_header_field(p.edf, "n_records", "90")


@_edf_fault("edf-record-count-too-low", "holds 80 complete data records",
            "its header declares only 70",
            description="header record count 80 -> 70 (less than the file holds)")
def _(p: Placed) -> None:
    set_header_field(p.edf, "n_records", "70")


@_edf_fault("edf-samples-per-record", "its header declares 80 data records of 10868 bytes",
            description="C3's samples per record 256 -> 512, so records no longer fit the size")
def _(p: Placed) -> None:
    set_signal_field(p.edf, "EEG C3-REF", "samples_per_record", "512")


@_edf_fault("edf-record-duration", "says duration 80 s but the EDF signal lasts 160 s",
            description="header record duration 1 s -> 2 s (the signal would last twice as long "
                        "as its annotation says)")
def _(p: Placed) -> None:
    set_header_field(p.edf, "record_duration", "2")


@_edf_fault("edf-missing-channel", "missing EEG channels: C3",
            description="C3 relabelled 'EEG X3-REF' (a required channel other than Fz/Pz missing)")
def _(p: Placed) -> None:
    set_signal_field(p.edf, "EEG C3-REF", "label", "EEG X3-REF")


@_edf_fault("edf-missing-fz-pz", outcome=BUILT,
            details=(("reconstructed", "FZ=mean(F3,F4); PZ=mean(P3,P4)"),),
            description="Fz and Pz relabelled away: rebuilt from F3/F4 and P3/P4, not rejected")
def _(p: Placed) -> None:
    set_signal_field(p.edf, "EEG FZ-REF", "label", "EEG X1-REF")
    set_signal_field(p.edf, "EEG PZ-REF", "label", "EEG X2-REF")


@_edf_fault("edf-duplicate-channel", "duplicate EEG channels: F3",
            description="F4 relabelled 'EEG F3-REF' (two F3 channels)")
def _(p: Placed) -> None:
    set_signal_field(p.edf, "EEG F4-REF", "label", "EEG F3-REF")


@_edf_fault("edf-duplicate-synonym", "duplicate EEG channels: T3",
            description="the extra signal relabelled 'EEG T7-REF', a synonym of T3 already present")
def _(p: Placed) -> None:
    set_signal_field(p.edf, "EEG EKG1-REF", "label", "EEG T7-REF")


@_edf_fault("edf-flat-channel", "flat EEG channel(s) with zero variance: O1",
            description="every O1 sample set to 0 (a disconnected electrode)")
def _(p: Placed) -> None:
    zero_signal(p.edf, "EEG O1-REF")


@_edf_fault("edf-extreme-amplitude",
            "implausible amplitude, standard deviation above 10000 uV on C4",
            description="C4's physical range set to -9999999..99999999 uV (values ~1e6 uV)")
def _(p: Placed) -> None:
    set_signal_field(p.edf, "EEG C4-REF", "physical_min", "-9999999")
    set_signal_field(p.edf, "EEG C4-REF", "physical_max", "99999999")


@_edf_fault("edf-mixed-rates", "EEG channels have different sampling rates", "EEG O2-REF 128 Hz",
            description="O2 at 128 Hz among 256 Hz channels (samples per record 256 -> 128, the "
                        "extra signal 256 -> 384 so the record size is unchanged)")
def _(p: Placed) -> None:
    set_signal_field(p.edf, "EEG O2-REF", "samples_per_record", "128")
    set_signal_field(p.edf, "EEG EKG1-REF", "samples_per_record", "384")


@_edf_fault("edf-start-date-quirk", outcome=BUILT, details=(("header_repair", "01:01:85"),),
            description="TUSZ start date '01:01:85' in the header: repaired in a temporary copy")
def _(p: Placed) -> None:
    raw = bytearray(p.edf.read_bytes())
    # as in the corpus: an EDF+ recording field that agrees with the 1985 start date
    raw[88:168] = bytes(raw[88:168]).replace(b"Startdate 01-JAN-2008", b"Startdate 01-JAN-1985")
    raw[168:176] = b"01:01:85"
    p.edf.write_bytes(bytes(raw))


@_case("edf-name-with-spaces", "edf", BUILT,
       description="recording renamed 'name with spaces (copy)_s001_t000.edf'")
def _(ctx: CaseContext) -> str:
    return ctx.place("edf-name-with-spaces", stem="name with spaces (copy)_s001_t000").source


@_case("edf-name-non-ascii", "edf", BUILT,
       description="recording renamed 'pätiënt-ñ_s001_t000.edf' (non-ASCII)")
def _(ctx: CaseContext) -> str:
    return ctx.place("edf-name-non-ascii", stem="pätiënt-ñ_s001_t000").source


# --- annotations ------------------------------------------------------------------------------

@_annotation_fault("ann-missing", "no annotation file", "never assumed seizure-free",
                   description="annotation file deleted")
def _(p: Placed) -> None:
    p.annotation.unlink()


@_annotation_fault("ann-empty", "no column header line",
                   description="annotation truncated to 0 bytes")
def _(p: Placed) -> None:
    truncate(p.annotation, 0)


@_annotation_fault("ann-header-only", "no annotation rows after the column header",
                   description="annotation cut after the column header (no rows)")
def _(p: Placed) -> None:
    edit_lines(p.annotation, lambda lines: lines[:6])


@_annotation_fault("ann-truncated-row", f"line {SEIZURE_LINE}: expected 5 fields, got 2",
                   description="annotation cut in the middle of the seizure row")
def _(p: Placed) -> None:
    edit_lines(p.annotation, lambda lines: lines[:SEIZURE_LINE - 1] + ["TERM,20.50"])


@_annotation_fault("ann-malformed-number",
                   f"line {SEIZURE_LINE}: start_time is not a number: '2O.5000'",
                   description="seizure start written '2O.5000' (letter O)")
def _(p: Placed) -> None:
    edit_lines(p.annotation, replace_line(SEIZURE_LINE, "TERM,2O.5000,45.2500,fnsz,1.0000"))


@_annotation_fault("ann-not-finite", f"line {SEIZURE_LINE}: stop_time is not finite: 'nan'",
                   description="seizure stop written 'nan'")
def _(p: Placed) -> None:
    edit_lines(p.annotation, replace_line(SEIZURE_LINE, "TERM,20.5000,nan,fnsz,1.0000"))


@_annotation_fault("ann-stop-before-start",
                   f"line {SEIZURE_LINE}: stop_time 20.5 is not after start_time 45.25",
                   description="seizure start and stop swapped")
def _(p: Placed) -> None:
    edit_lines(p.annotation, replace_line(SEIZURE_LINE, "TERM,45.2500,20.5000,fnsz,1.0000"))


@_annotation_fault("ann-negative-time", f"line {BCKG_LINE}: negative start_time -1.0",
                   description="first row starts at -1 s")
def _(p: Placed) -> None:
    edit_lines(p.annotation, replace_line(BCKG_LINE, "TERM,-1.0000,20.5000,bckg,1.0000"))


@_annotation_fault("ann-event-past-end",
                   "seizure at 60-95 s runs past the end of the signal (80 s)",
                   description="seizure 60-95 s in an 80 s recording")
def _(p: Placed) -> None:
    edit_lines(p.annotation, replace_line(SEIZURE_LINE, "TERM,60.0000,95.0000,fnsz,1.0000"))


@_annotation_fault("ann-event-after-end",
                   f"line {SEIZURE_LINE}: event starts at 85.0 s, after the end of the recording",
                   description="seizure 85-90 s in an 80 s recording")
def _(p: Placed) -> None:
    edit_lines(p.annotation, replace_line(SEIZURE_LINE, "TERM,85.0000,90.0000,fnsz,1.0000"))


@_annotation_fault("ann-unknown-label", f"line {SEIZURE_LINE}: unknown label 'seizure'",
                   description="seizure labelled 'seizure' instead of a TUSZ code")
def _(p: Placed) -> None:
    edit_lines(p.annotation, replace_line(SEIZURE_LINE, "TERM,20.5000,45.2500,seizure,1.0000"))


@_annotation_fault("ann-missing-column", "line 6: column header lacks confidence",
                   description="'confidence' column dropped from the header")
def _(p: Placed) -> None:
    edit_lines(p.annotation, replace_line(6, "channel,start_time,stop_time,label"))


@_annotation_fault("ann-no-duration", "no '# duration = ... secs' header line",
                   description="the '# duration' comment line removed")
def _(p: Placed) -> None:
    edit_lines(p.annotation, lambda lines: [x for x in lines if not x.startswith("# duration")])


@_annotation_fault("ann-duration-mismatch", "says duration 90 s but the EDF signal lasts 80 s",
                   description="'# duration = 90.0000 secs' for an 80 s EDF")
def _(p: Placed) -> None:
    edit_lines(p.annotation, replace_line(3, "# duration = 90.0000 secs"))


@_annotation_fault("ann-not-utf8", "not UTF-8 text",
                   description="a Latin-1 byte in the bname comment")
def _(p: Placed) -> None:
    data = p.annotation.read_bytes().replace(b"# bname = ", b"# bname = \xe9", 1)
    p.annotation.write_bytes(data)


@_annotation_fault("ann-crlf", outcome=BUILT, description="CRLF line endings")
def _(p: Placed) -> None:
    p.annotation.write_bytes(p.annotation.read_bytes().replace(b"\n", b"\r\n"))


@_annotation_fault("ann-bom", outcome=BUILT, description="UTF-8 byte-order mark")
def _(p: Placed) -> None:
    p.annotation.write_bytes(b"\xef\xbb\xbf" + p.annotation.read_bytes())


@_annotation_fault("ann-spaces-around-fields", outcome=BUILT,
                   description="spaces around every field and the header names")
def _(p: Placed) -> None:
    edit_lines(p.annotation, lambda lines: [
        x if x.startswith("#") else " " + " , ".join(x.split(",")) + "  " for x in lines])


@_annotation_fault("ann-bom-crlf-spaces", outcome=BUILT,
                   description="BOM, CRLF and spaces together, columns in another order")
def _(p: Placed) -> None:
    def edit(lines: list[str]) -> list[str]:
        order = (1, 2, 0, 3, 4)  # start_time, stop_time, channel, label, confidence
        return [x if x.startswith("#") else
                " , ".join(x.split(",")[i] for i in order) for x in lines]
    edit_lines(p.annotation, edit)
    p.annotation.write_bytes(b"\xef\xbb\xbf" + p.annotation.read_bytes().replace(b"\n", b"\r\n"))


@_annotation_fault("ann-csv-only", outcome=BUILT,
                   description="only a .csv annotation (no .csv_bi)")
def _(p: Placed) -> None:
    p.annotation.rename(p.annotation.with_suffix(".csv"))


# --- drops --------------------------------------------------------------------------------------

@_case("drop-symlink-outside", "drop", IGNORED, "symlink to", "outside",
       description="an EDF symlink in the split pointing outside the raw root")
def _(ctx: CaseContext) -> str:
    target_dir = ctx.outside_dir / "elsewhere"
    target_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ctx.template.edf, target_dir / "secret_s001_t000.edf")
    shutil.copyfile(ctx.template.annotation, target_dir / "secret_s001_t000.csv_bi")
    folder = tusz_dir(ctx.split_dir, "drop-symlink-outside")
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "drop-symlink-outside_s001_t000.edf"
    link.symlink_to(target_dir / "secret_s001_t000.edf")
    (folder / "drop-symlink-outside_s001_t000.csv_bi").symlink_to(
        target_dir / "secret_s001_t000.csv_bi")
    return link.relative_to(ctx.split_dir).as_posix()


@_case("drop-broken-symlink", "drop", IGNORED, "broken symlink",
       description="an EDF symlink whose target does not exist")
def _(ctx: CaseContext) -> str:
    folder = tusz_dir(ctx.split_dir, "drop-broken-symlink")
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "drop-broken-symlink_s001_t000.edf"
    link.symlink_to(folder / "gone_s001_t000.edf")
    return link.relative_to(ctx.split_dir).as_posix()


@_case("drop-duplicate-stem", "drop", QUARANTINED, "duplicate recording name",
       "drop-duplicate-stem/s001_2015/01_tcp_ar/drop-duplicate-stem_s001_t000.edf "
       "has the same stem",
       description="the same recording dropped twice (same stem in two session folders)")
def _(ctx: CaseContext) -> str:
    ctx.place("drop-duplicate-stem", session="s001_2015")
    return ctx.place("drop-duplicate-stem", session="s002_2016").source


def good_stems(n: int) -> list[str]:
    return [f"good-{i:02d}_s001_t000" for i in range(n)]


@dataclass
class Catalogue:
    split_dir: Path
    cases: list[tuple[FaultCase, str]]   # (case, source of the input under test)
    good_sources: list[str]              # good recordings (incl. the first duplicate copy)

    def source_of(self, name: str) -> str:
        return next(source for case, source in self.cases if case.name == name)

    @property
    def expected_built(self) -> list[str]:
        return sorted(self.good_sources
                      + [source for case, source in self.cases if case.outcome == BUILT])


def lay_out_catalogue(split_dir: Path, outside_dir: Path, template: Template,
                      n_good: int = 3, cases: list[FaultCase] | None = None) -> Catalogue:
    """Every case plus ``n_good`` untouched copies of the template, in one split folder."""
    ctx = CaseContext(Path(split_dir), Path(outside_dir), template)
    good = [ctx.place(stem.split("_")[0], stem=stem).source for stem in good_stems(n_good)]
    laid = [(case, case.make(ctx)) for case in (CATALOGUE if cases is None else cases)]
    if any(case.name == "drop-duplicate-stem" for case, _ in laid):
        good.append("drop-duplicate-stem/s001_2015/01_tcp_ar/drop-duplicate-stem_s001_t000.edf")
    return Catalogue(Path(split_dir), laid, good)


# ------------------------------------------------------------------------------------------------
# Checking a case against the three places a reason must appear
# ------------------------------------------------------------------------------------------------

def ledger_facts(cache_dir: Path) -> dict[str, tuple]:
    """Per source: (status, n_windows, seizure_samples, npz_name, reason)."""
    from eeg_assets.lib.cache.ledger import Ledger

    return {source: (e.status, e.n_windows, list(e.seizure_samples), e.npz_name, e.reason)
            for source, e in Ledger(cache_dir).entries().items()}


def cli_line(cli_output: str, label: str, source: str) -> str | None:
    """The summary line ``  <label>: <source>: <reason>`` of the build-cache output."""
    prefix = f"  {label}: {source}: "
    return next((line for line in cli_output.splitlines() if line.startswith(prefix)), None)


def _missing(text: str | None, reasons: tuple[str, ...]) -> list[str]:
    return [r for r in reasons if text is None or r not in text]


def check_case(case: FaultCase, source: str, cache_dir: Path, *, cli_output: str | None = None,
               metadata_rows: list[dict] | None = None, reference: tuple | None = None
               ) -> list[str]:
    """Problems with how one case was handled (empty list: handled as its catalogue entry says).

    ``cli_output`` is the build-cache output, ``metadata_rows`` the ``quarantined`` table of the
    npz_windows materialization, ``reference`` the ledger facts of an untouched good copy (a BUILT
    case must give the same windows and labels).
    """
    from eeg_assets.lib.cache.ledger import Ledger

    problems: list[str] = []
    entries = Ledger(cache_dir).entries()
    entry = entries.get(source)
    if case.outcome == IGNORED:
        if entry is not None:
            problems.append(f"ledger has an entry for the ignored {source} ({entry.status})")
        if cli_output is not None:
            line = cli_line(cli_output, "ignored", source)
            if missing := _missing(line, case.reasons):
                problems.append(f"CLI output line 'ignored: {source}: ...' lacks {missing}: "
                                f"{line!r}")
        return problems
    if entry is None:
        return [f"no ledger entry for {source}"]
    if case.outcome == BUILT:
        if entry.status != BUILT:
            return [f"expected built, got {entry.status}: {entry.reason}"]
        if not (cache_dir / entry.npz_name).is_file():
            problems.append(f"built but {entry.npz_name} is missing")
        if reference is not None and (entry.n_windows, list(entry.seizure_samples)) != reference:
            problems.append(f"built with n_windows={entry.n_windows}, seizure samples "
                            f"{entry.seizure_samples}; the untouched recording gives {reference}")
        for key, text in case.details:
            if text not in str(entry.details.get(key, "")):
                problems.append(f"details[{key!r}] lacks {text!r}: {entry.details.get(key)!r}")
        if cli_output is not None and cli_line(cli_output, "quarantined", source):
            problems.append("listed as quarantined in the CLI output")
        if metadata_rows is not None and any(r["recording"] == source for r in metadata_rows):
            problems.append("listed in the npz_windows 'quarantined' metadata table")
        return problems
    # QUARANTINED (or FAILED): the reason in the ledger, the CLI summary and the metadata table
    if entry.status != case.outcome:
        problems.append(f"expected {case.outcome}, got {entry.status}: {entry.reason}")
    if missing := _missing(entry.reason, case.reasons):
        problems.append(f"ledger reason lacks {missing}: {entry.reason!r}")
    if entry.npz_name or any(e.npz_name == f"{entry.stem}_windows.npz" and s == source
                             for s, e in entries.items()):
        problems.append(f"a rejected input has an NPZ: {entry.npz_name}")
    if cli_output is not None:
        label = "failed (will retry)" if case.outcome == FAILED else "quarantined"
        line = cli_line(cli_output, label, source)
        if missing := _missing(line, case.reasons):
            problems.append(f"CLI output line '{label}: {source}: ...' lacks {missing}: {line!r}")
    if metadata_rows is not None:
        row = next((r for r in metadata_rows if r["recording"] == source), None)
        if row is None:
            problems.append(f"{source} is not in the npz_windows 'quarantined' metadata table")
        else:
            if row["status"] != case.outcome:
                problems.append(f"metadata table status {row['status']!r}")
            if missing := _missing(row["reason"], case.reasons):
                problems.append(f"metadata table reason lacks {missing}: {row['reason']!r}")
    return problems


# ------------------------------------------------------------------------------------------------
# Inspecting a cache folder
# ------------------------------------------------------------------------------------------------

def temporary_files(cache_dir: Path) -> list[str]:
    return sorted(p.name for p in Path(cache_dir).glob(".*.tmp"))


def untrustworthy_files(cache_dir: Path) -> list[str]:
    """Files under a final name that a later step would read but that are incomplete: an NPZ that
    does not load completely, an index or manifest that is not valid JSON."""
    bad = []
    for npz in sorted(Path(cache_dir).glob("*_windows.npz")):
        try:
            with np.load(npz) as data:
                windows, labels = data["windows"], data["labels"]
                if windows.shape[0] != labels.shape[0] or windows.shape[0] == 0:
                    bad.append(f"{npz.name}: {windows.shape} windows, {labels.shape} labels")
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            bad.append(f"{npz.name}: {type(exc).__name__}: {exc}")
    for name in ("_dataset_index.json", "manifest.json", "balanced_dataset.json"):
        path = Path(cache_dir) / name
        if path.exists():
            try:
                json.loads(path.read_bytes())
            except ValueError as exc:
                bad.append(f"{name}: {exc}")
    return bad


def npz_arrays(cache_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for path in sorted(Path(cache_dir).glob("*_windows.npz")):
        with np.load(path) as data:
            out[path.name] = (data["windows"].copy(), data["labels"].copy())
    return out


def staleness(cache_dir: Path) -> tuple[str | None, str | None]:
    """``(index_staleness, manifest_staleness)`` of a split."""
    from eeg_assets.lib.dataset.index import index_staleness
    from eeg_assets.lib.dataset.manifest import manifest_staleness

    return index_staleness(cache_dir), manifest_staleness(cache_dir)


def compare_with_reference(cache_dir: Path, reference_dir: Path) -> tuple[list[str], int]:
    """Problems of ``cache_dir`` against an uninterrupted build, and the number of NPZs lost."""
    from eeg_assets.lib.dataset.index import read_index

    problems = []
    ours, theirs = npz_arrays(cache_dir), npz_arrays(reference_dir)
    lost = sorted(set(theirs) - set(ours))
    if lost:
        problems.append(f"NPZs lost: {lost}")
    if extra := sorted(set(ours) - set(theirs)):
        problems.append(f"NPZs not in the uninterrupted build: {extra}")
    for name in sorted(set(ours) & set(theirs)):
        if not (np.array_equal(ours[name][0], theirs[name][0])
                and np.array_equal(ours[name][1], theirs[name][1])):
            problems.append(f"{name}: arrays differ from the uninterrupted build")
    if (facts := ledger_facts(cache_dir)) != (ref := ledger_facts(reference_dir)):
        differ = sorted(s for s in set(facts) | set(ref) if facts.get(s) != ref.get(s))
        problems.append(f"ledger facts differ for {differ}")
    index_reason, manifest_reason = staleness(cache_dir)
    if index_reason:
        problems.append(f"index stale: {index_reason}")
    if manifest_reason:
        problems.append(f"manifest stale: {manifest_reason}")
    try:
        missing = [f for f in read_index(cache_dir).files if not (cache_dir / f).is_file()]
        if missing:
            problems.append(f"index references missing files {missing}")
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        problems.append(f"index unreadable: {exc}")
    return problems, len(lost)


# ------------------------------------------------------------------------------------------------
# Running the command line
# ------------------------------------------------------------------------------------------------

def cli_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("BGB_")}


def build_cache_args(data_dir: Path, cache_dir: Path, workers: int = 1,
                     split: str = "train") -> list[str]:
    return ["build-cache", "--data-dir", str(data_dir), "--cache-dir", str(cache_dir),
            "--split", split, "--workers", str(workers), "--no-progress"]


def run_build_cache(data_dir: Path, cache_dir: Path, workers: int = 1, *,
                    timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "eeg_assets",
                           *build_cache_args(data_dir, cache_dir, workers)],
                          capture_output=True, text=True, env=cli_env(), cwd=REPO_ROOT,
                          timeout=timeout)


def build_reference(data_dir: Path, cache_dir: Path) -> None:
    """An uninterrupted build (in this process) with its index and manifest."""
    from eeg_assets.lib.cache.build import build_split
    from eeg_assets.lib.dataset.index import collect_facts, update_index
    from eeg_assets.lib.dataset.manifest import update_manifest

    build_split(data_dir, cache_dir, "train", workers=1, progress=None, log=lambda line: None)
    facts = collect_facts(cache_dir)
    update_index(cache_dir, facts=facts)
    update_manifest(cache_dir, facts=facts)


def live_group_members(pgid: int) -> list[int]:
    """Processes (not zombies) of a process group, from /proc."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            pids.append(int(name))
    return pids


# ------------------------------------------------------------------------------------------------
# Scenarios
# ------------------------------------------------------------------------------------------------

@dataclass
class ScenarioResult:
    name: str
    group: str
    inputs: int = 0               # inputs (bad files, kills, races, stale states) tried
    rejections_expected: int = 0  # of them, how many must be rejected with a reason
    rejected_as_expected: int = 0
    good_expected: int = 0
    good_built: int = 0
    files_lost: int = 0
    half_written: int = 0
    stale_expected: int = 0
    stale_undetected: int = 0
    problems: list[str] = field(default_factory=list)
    detail: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


def write_corpus(data_dir: Path, n: int = 6, duration_s: float = 150, *,
                 with_bad: bool = True) -> list[str]:
    """``n`` good recordings with different signals and seizures; with ``with_bad`` also one
    without annotation and one too short (so quarantine and too-short facts are compared too).
    Returns the sources expected to be built."""
    sources = []
    for i in range(n):
        stem = f"crash{i:03d}_s001_t000"
        files = write_recording(tusz_dir(data_dir, f"crash{i:03d}"), stem, fs=TEMPLATE_FS,
                                duration_s=duration_s, generator=noise_generator(seed=100 + i),
                                events=[Event(20.5 + 7 * i, 50.25 + 7 * i, "fnsz")],
                                extra_labels=["EEG EKG1-REF"], side_labels=["IBI"])
        sources.append(files.edf.relative_to(data_dir).as_posix())
    if with_bad:
        write_recording(tusz_dir(data_dir, "noann"), "noann_s001_t000", duration_s=70,
                        annotation=None)
        write_recording(tusz_dir(data_dir, "short"), "short_s001_t000", duration_s=40)
    return sources


def _wait_for(predicate: Callable[[], bool], timeout: float, proc: subprocess.Popen) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if predicate():
            return True
        time.sleep(0.002)
    return False


def crash_scenario(work_dir: Path, data_dir: Path, reference_dir: Path, *, seed: int,
                   workers: int = 1, trigger: str = "time") -> ScenarioResult:
    """SIGKILL a ``build-cache`` process, then rerun it and compare with an uninterrupted build.

    Where the kill lands, drawn from ``seed``:

    * ``trigger="time"``: 0.3-3.0 s after the process started (imports, build or index/manifest
      refresh, whichever is running then);
    * ``trigger="progress"``: once k of the NPZs are in place (k random), 0-0.2 s later: always
      inside the build, wherever it is (a write, a rename, a ledger update);
    * ``trigger="mid-write"``: as soon as one NPZ is in place while another is being written.

    Only the main process is killed, as the OOM killer or ``kill -9 <pid>`` would; its workers
    must not outlive it.
    """
    rng = random.Random(seed)
    n_expected = len(list(Path(reference_dir).glob("*_windows.npz")))
    if trigger == "time":
        delay = rng.uniform(0.3, 3.0)
        name = f"kill -9 {delay:.2f} s after start, seed {seed}"
    elif trigger == "progress":
        k, delay = rng.randrange(n_expected), rng.uniform(0.0, 0.2)
        name = f"kill -9 {delay:.2f} s after NPZ #{k} was in place, seed {seed}"
    else:
        name = "kill -9 mid-write (one NPZ in place, another being written)"
    name += f", {workers} worker(s)"
    result = ScenarioResult(name, "crash (SIGKILL + rerun)", inputs=1)
    cache = Path(work_dir) / f"crash_{trigger}_{seed}_{workers}"
    proc = subprocess.Popen([sys.executable, "-m", "eeg_assets",
                             *build_cache_args(data_dir, cache, workers)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=cli_env(),
                            cwd=REPO_ROOT, start_new_session=True)
    started = time.monotonic()
    try:
        if trigger == "time":
            _wait_for(lambda: time.monotonic() - started >= delay, 120, proc)
        elif trigger == "progress":
            _wait_for(lambda: (cache / ".build.lock").exists()
                      and len(list(cache.glob("*_windows.npz"))) >= k, 120, proc)
            _wait_for(lambda: False, delay, proc)
        else:
            _wait_for(lambda: any(cache.glob("*_windows.npz")) and any(cache.glob(".*.tmp")),
                      120, proc)
        finished_first = proc.poll() is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        npz_at_kill = sorted(p.name for p in cache.glob("*_windows.npz"))
        tmp_at_kill = temporary_files(cache)
        # Its workers (a pool when workers > 1) must go with it.
        deadline = time.monotonic() + 5
        while live_group_members(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        survivors = live_group_members(proc.pid)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if survivors:
        result.problems.append(f"{len(survivors)} worker process(es) outlived the killed build "
                               "(still writing into the split)")
    untrusted = untrustworthy_files(cache)
    rerun = run_build_cache(data_dir, cache, workers=1)
    if rerun.returncode != 0:
        result.problems.append(f"rerun exited {rerun.returncode}: {rerun.stderr[-500:]}")
    untrusted += [f for f in untrustworthy_files(cache) if f not in untrusted]
    leftovers = temporary_files(cache)
    problems, lost = compare_with_reference(cache, reference_dir)
    result.problems += problems
    if untrusted:
        result.problems.append(f"incomplete files under a final name: {untrusted}")
    if leftovers:
        result.problems.append(f"temporary files left after the rerun: {leftovers}")
    reference_npz = len(list(reference_dir.glob("*_windows.npz")))
    result.good_expected = reference_npz
    result.good_built = reference_npz - lost
    result.files_lost = lost
    result.half_written = len(untrusted) + len(leftovers)
    state = ("the build had already finished" if finished_first else
             f"{len(npz_at_kill)} NPZ(s) in place, {len(tmp_at_kill)} temporary file(s)")
    result.detail = f"at the kill: {state}; rerun: exit {rerun.returncode}"
    shutil.rmtree(cache, ignore_errors=True)
    return result


def _limited_build_command(data_dir: Path, cache_dir: Path, limit_bytes: int) -> list[str]:
    """build-cache in a process that may not write files larger than ``limit_bytes`` (a full disk
    as the writer sees it: write() fails with EFBIG instead of the process being killed)."""
    code = ("import resource, runpy, signal, sys; "
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit_bytes}, {limit_bytes})); "
            "sys.argv[0] = 'eeg_assets'; "
            "runpy.run_module('eeg_assets', run_name='__main__', alter_sys=True)")
    return [sys.executable, "-c", code, *build_cache_args(data_dir, cache_dir, workers=1)]


def disk_full_scenario(work_dir: Path, limit_bytes: int = 12 * 2 ** 20) -> ScenarioResult:
    """A write that fails (file-size limit) is 'failed' with a clear reason, leaves nothing under
    the final name, does not stop the small recording, and is built by a rerun without the limit.
    """
    result = ScenarioResult(f"file-size limit {limit_bytes >> 20} MiB (disk full), then rerun",
                            "disk full", inputs=1, rejections_expected=1, good_expected=2)
    data, cache = Path(work_dir) / "diskfull_data", Path(work_dir) / "diskfull_cache"
    small = write_recording(tusz_dir(data, "small"), "small_s001_t000", duration_s=80,
                            events=[Event(20.5, 45.25, "fnsz")])
    big = write_recording(tusz_dir(data, "big"), "big_s001_t000", duration_s=300,
                          events=[Event(100.0, 160.0, "fnsz")])
    small_src, big_src = (f.edf.relative_to(data).as_posix() for f in (small, big))
    first = subprocess.run(_limited_build_command(data, cache, limit_bytes), capture_output=True,
                           text=True, env=cli_env(), cwd=REPO_ROOT, timeout=300)
    facts = ledger_facts(cache)
    reasons = ("could not write", "big_s001_t000_windows.npz", "File too large")
    big_fact = facts.get(big_src)
    if first.returncode != 0:
        result.problems.append(f"limited run exited {first.returncode}: {first.stderr[-300:]}")
    if big_fact is None or big_fact[0] != FAILED:
        result.problems.append(f"big recording: expected status failed, got {big_fact}")
    elif missing := _missing(big_fact[4], reasons):
        result.problems.append(f"failed reason lacks {missing}: {big_fact[4]!r}")
    line = cli_line(first.stdout, "failed (will retry)", big_src)
    if missing := _missing(line, reasons):
        result.problems.append(f"CLI output lacks {missing} for the failed write: {line!r}")
    elif big_fact is not None and big_fact[0] == FAILED and not _missing(big_fact[4], reasons):
        result.rejected_as_expected = 1
    half = [p.name for p in cache.glob("big*")] + temporary_files(cache) \
        + untrustworthy_files(cache)
    if half:
        result.problems.append(f"left after the failed write: {half}")
    result.half_written = len(half)
    if facts.get(small_src, (None,))[0] != BUILT:
        result.problems.append(f"the small recording was not built: {facts.get(small_src)}")
    second = run_build_cache(data, cache)
    facts = ledger_facts(cache)
    built = [s for s in (small_src, big_src) if facts.get(s, (None,))[0] == BUILT
             and (cache / facts[s][3]).is_file()]
    result.good_built = len(built)
    if second.returncode != 0 or big_src not in built:
        result.problems.append(f"rerun without the limit did not build the big recording "
                               f"(exit {second.returncode}): {facts.get(big_src)}")
    result.files_lost = 2 - len(built)
    index_reason, manifest_reason = staleness(cache)
    if index_reason or manifest_reason:
        result.problems.append(f"stale after the rerun: {index_reason or manifest_reason}")
    result.detail = (f"limited run: {big_fact[0] if big_fact else None}: "
                     f"{big_fact[4] if big_fact else ''} | rerun built {len(built)}/2")
    return result


_LIBRARY_RUN = """
import sys
from pathlib import Path
from eeg_assets.lib.cache.build import build_split
from eeg_assets.lib.dataset.index import collect_facts, update_index
from eeg_assets.lib.dataset.manifest import update_manifest
data, cache = Path(sys.argv[1]), Path(sys.argv[2])
build_split(data, cache, "train", workers=1, progress=None, log=lambda line: None)
update_index(cache)
update_manifest(cache)
"""


def concurrency_scenario(work_dir: Path, data_dir: Path, reference_dir: Path, *,
                         how: str = "cli", rounds: int = 1) -> ScenarioResult:
    """Two processes build the same split at once (``how="cli"``: two build-cache commands;
    ``how="library"``: two "Dagster runs", i.e. build_split then update_index and update_manifest
    as the npz_windows, dataset_index and manifest assets do). Both must succeed and the result
    must equal one uninterrupted build."""
    title = ("two build-cache processes on the same split" if how == "cli" else
             "two runs of build_split + update_index + update_manifest (as Dagster)")
    result = ScenarioResult(title, "concurrency", inputs=rounds)
    for round_no in range(rounds):
        cache = Path(work_dir) / f"concurrent_{how}_{round_no}"
        if how == "cli":
            command = [sys.executable, "-m", "eeg_assets", *build_cache_args(data_dir, cache)]
        else:
            command = [sys.executable, "-c", _LIBRARY_RUN, str(data_dir), str(cache)]
        procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=cli_env(), cwd=REPO_ROOT) for _ in range(2)]
        outputs = [p.communicate(timeout=300) for p in procs]
        for p, (_out, err) in zip(procs, outputs):
            if p.returncode != 0:
                result.problems.append(f"round {round_no}: a process exited {p.returncode}: "
                                       f"{err.strip().splitlines()[-1] if err.strip() else ''}")
        problems, lost = compare_with_reference(cache, reference_dir)
        result.problems += [f"round {round_no}: {p}" for p in problems]
        half = temporary_files(cache) + untrustworthy_files(cache)
        if half:
            result.problems.append(f"round {round_no}: left {half}")
        n_ref = len(list(reference_dir.glob("*_windows.npz")))
        result.good_expected += n_ref
        result.good_built += n_ref - lost
        result.files_lost += lost
        result.half_written += len(half)
        shutil.rmtree(cache, ignore_errors=True)
    result.detail = f"{rounds} round(s); exit codes and results compared with one run"
    return result


def drops_after_caching_scenario(work_dir: Path, template: Template) -> ScenarioResult:
    """A split is built, then: one recording deleted, one annotation deleted, one EDF replaced by
    a truncated copy (a half-finished overwrite), one half-copied EDF dropped. The rerun removes
    or quarantines each with its reason and drops its NPZ from the index and the manifest; the
    half-copied file, once its copy completes, is built on the next run."""
    from eeg_assets.lib.dataset.index import read_index
    from eeg_assets.lib.dataset.manifest import read_manifest

    result = ScenarioResult("recordings deleted / damaged after they were cached", "drop",
                            inputs=4, rejections_expected=4)
    data, cache = Path(work_dir) / "drops_data", Path(work_dir) / "drops_cache"
    ctx = CaseContext(data, Path(work_dir) / "drops_outside", template)
    placed = {name: ctx.place(name) for name in ("keep", "deleted", "annotationgone", "damaged")}
    first = run_build_cache(data, cache)
    if first.returncode != 0:
        result.problems.append(f"first build exited {first.returncode}: {first.stderr[-300:]}")
    placed["deleted"].edf.unlink()
    placed["deleted"].annotation.unlink()
    placed["annotationgone"].annotation.unlink()
    layout = EdfLayout.read(placed["damaged"].edf)
    truncate(placed["damaged"].edf, layout.header_bytes + 10 * layout.record_bytes)
    copying = ctx.place("copying")  # dropped while its copy is still running: half the bytes
    full_copy = copying.edf.read_bytes()
    truncate(copying.edf, len(full_copy) // 2)
    second = run_build_cache(data, cache)
    out = second.stdout
    lines = out.splitlines()

    def quarantined_for(source: str, reason: str) -> bool:
        return not _missing(cli_line(out, "quarantined", source), (reason,))

    expectations = [
        ("deleted", "removed (EDF gone)",
         f"  removed (EDF gone): {placed['deleted'].source}" in lines),
        ("annotationgone", "no annotation file",
         quarantined_for(placed["annotationgone"].source, "no annotation file")),
        ("damaged", "only 10 complete records are present",
         quarantined_for(placed["damaged"].source, "only 10 complete records are present")),
        ("copying", "shorter than its header declares",
         quarantined_for(copying.source, "shorter than its header declares")),
    ]
    for name, reason, ok in expectations:
        if ok:
            result.rejected_as_expected += 1
        else:
            result.problems.append(f"{name}: CLI output lacks {reason!r}")
    facts = ledger_facts(cache)
    if placed["deleted"].source in facts:
        result.problems.append("ledger still has the deleted recording")
    gone = {f"{name}_s001_t000_windows.npz" for name in ("deleted", "annotationgone", "damaged")}
    on_disk = {p.name for p in cache.glob("*_windows.npz")}
    if on_disk & gone:
        result.problems.append(f"NPZs of removed/rejected recordings still on disk: "
                               f"{sorted(on_disk & gone)}")
    try:
        referenced = set(read_index(cache).files) | {
            e["cache_file"] for entries in read_manifest(cache).values() for e in entries}
        if referenced & gone:
            result.problems.append(f"index/manifest still reference {sorted(referenced & gone)}")
    except Exception as exc:  # noqa: BLE001
        result.problems.append(f"index/manifest unreadable: {exc}")
    index_reason, manifest_reason = staleness(cache)
    if index_reason or manifest_reason:
        result.problems.append(f"stale after the rerun: {index_reason or manifest_reason}")
    copying.edf.write_bytes(full_copy)  # the copy completes: a new fingerprint, so it is retried
    third = run_build_cache(data, cache)
    facts = ledger_facts(cache)
    built = [s for s in (placed["keep"].source, copying.source)
             if facts.get(s, (None,))[0] == BUILT]
    result.good_expected, result.good_built = 2, len(built)
    result.files_lost = 2 - len(built)
    if len(built) != 2:
        result.problems.append(f"after the copy completed (exit {third.returncode}): "
                               f"{ {s: facts.get(s, (None,))[0] for s in facts} }")
    half = temporary_files(cache) + untrustworthy_files(cache)
    result.half_written = len(half)
    if half:
        result.problems.append(f"left {half}")
    result.detail = "; ".join(line for line in out.splitlines() if line.startswith("  "))
    return result


def _rewrite_npz(path: Path, *, labels: Callable[[np.ndarray], np.ndarray] | None = None,
                 keep: int | None = None) -> None:
    from eeg_assets.lib.cache.npzio import write_npz

    with np.load(path) as data:
        windows, label_rows = data["windows"].copy(), data["labels"].copy()
    if keep is not None:
        windows, label_rows = windows[:keep], label_rows[:keep]
    if labels is not None:
        label_rows = labels(label_rows)
    time.sleep(0.01)  # a later mtime even on coarse-clock file systems
    write_npz(path, windows=windows, labels=label_rows)


#: name -> (what is done behind the manifest's back, the reason substring it must give).
STALE_CASES: dict[str, tuple[str, str]] = {
    "npz-added": ("a foreign NPZ copied into the split", "extra NPZ"),
    "npz-removed": ("an NPZ deleted", "missing NPZ"),
    "npz-rebuilt-labels": ("an NPZ rewritten with every label set to seizure", "changed NPZ"),
    "npz-rebuilt-fewer-windows": ("an NPZ rewritten with its last window dropped", "changed NPZ"),
    "manifest-truncated": ("manifest.json cut in half (a half-written file)",
                           "corrupt manifest.json"),
    "manifest-deleted": ("manifest.json deleted", "missing manifest.json"),
    "manifest-emptied": ("manifest.json replaced by empty categories", "empty manifest.json"),
    "config-changed": ("the notch frequency changed to 50 Hz", "config change"),
}


def stale_manifest_scenario(work_dir: Path, built_cache: Path) -> ScenarioResult:
    """Each change made behind the manifest's back must make ``manifest_staleness`` give a reason;
    an untouched split, and an NPZ rewritten with identical content, must not."""
    from eeg_assets.lib.config import CacheConfig
    from eeg_assets.lib.dataset.index import index_staleness
    from eeg_assets.lib.dataset.manifest import MANIFEST_NAME, manifest_staleness

    result = ScenarioResult("changes behind the manifest's back", "stale manifest",
                            inputs=len(STALE_CASES) + 2, stale_expected=len(STALE_CASES))
    details = []
    for name, (what, expected) in STALE_CASES.items():
        cache = Path(work_dir) / f"stale_{name}"
        shutil.copytree(built_cache, cache)  # copy2: mtimes kept, so the ledger still applies
        first = sorted(cache.glob("*_windows.npz"))[0]
        config = None
        if name == "npz-added":
            shutil.copy2(first, cache / "zzforeign_s001_t000_windows.npz")
        elif name == "npz-removed":
            first.unlink()
        elif name == "npz-rebuilt-labels":
            _rewrite_npz(first, labels=np.ones_like)
        elif name == "npz-rebuilt-fewer-windows":
            _rewrite_npz(first, keep=-1)
        elif name == "manifest-truncated":
            data = (cache / MANIFEST_NAME).read_bytes()
            (cache / MANIFEST_NAME).write_bytes(data[:len(data) // 2])
        elif name == "manifest-deleted":
            (cache / MANIFEST_NAME).unlink()
        elif name == "manifest-emptied":
            (cache / MANIFEST_NAME).write_text(
                '{"partial_seizure":[],"full_seizure":[],"no_seizure":[]}\n')
        elif name == "config-changed":
            config = CacheConfig(notch_hz=50.0)
        reason = manifest_staleness(cache, config) if config else manifest_staleness(cache)
        if reason is None:
            result.stale_undetected += 1
            result.problems.append(f"{name} ({what}): manifest_staleness says current")
        elif expected not in reason:
            result.problems.append(f"{name}: reason lacks {expected!r}: {reason!r}")
        details.append(f"{name}: {reason}")
        shutil.rmtree(cache, ignore_errors=True)
    # Controls: nothing changed; an NPZ rebuilt with identical content (the manifest is still
    # right, the index records the new fingerprint as a change).
    cache = Path(work_dir) / "stale_controls"
    shutil.copytree(built_cache, cache)
    if (reason := manifest_staleness(cache)) is not None:
        result.problems.append(f"untouched split reported stale: {reason}")
    _rewrite_npz(sorted(cache.glob("*_windows.npz"))[0])
    if (reason := manifest_staleness(cache)) is not None:
        result.problems.append(f"identical rebuild reported stale manifest: {reason}")
    if "changed NPZ" not in (index_staleness(cache) or ""):
        result.problems.append("identical rebuild: index_staleness misses the new fingerprint")
    shutil.rmtree(cache, ignore_errors=True)
    result.detail = " | ".join(details)
    return result


def settling_scenario(work_dir: Path, template: Template) -> ScenarioResult:
    """The drop sensor's view of a file still being copied: ``list_recordings`` + ``settled``
    leave it for a later tick until its size and mtime hold still and its annotation exists; an
    EDF without annotation keeps waiting; a symlink out of the raw root is never observed."""
    from eeg_assets.lib.cache.discovery import list_recordings
    from eeg_assets.orchestration.sensors import settled

    result = ScenarioResult("a file still being copied (drop sensor ticks)", "drop", inputs=3)
    raw = Path(work_dir) / "settling_raw"
    folder = tusz_dir(raw, "arriving")
    folder.mkdir(parents=True)
    edf = folder / "arriving_s001_t000.edf"
    full = template.edf.read_bytes()
    edf.write_bytes(full[:len(full) // 3])                     # tick 1: a third copied
    lonely = folder / "lonely_s001_t000.edf"                    # EDF whose annotation never comes
    shutil.copyfile(template.edf, lonely)
    outside = Path(work_dir) / "settling_outside"
    outside.mkdir()
    shutil.copyfile(template.edf, outside / "x.edf")
    (folder / "link_s001_t000.edf").symlink_to(outside / "x.edf")
    ticks = []
    previous: dict = {}
    for step in range(4):
        if step == 1:
            with open(edf, "ab") as fh:                           # tick 2: copy goes on
                fh.write(full[len(full) // 3:2 * len(full) // 3])
        elif step == 2:
            with open(edf, "ab") as fh:                           # tick 3: copy done, no csv_bi
                fh.write(full[2 * len(full) // 3:])
        elif step == 3:
            shutil.copyfile(template.annotation, edf.with_suffix(".csv_bi"))
        current = list_recordings(raw).inputs()
        ready, waiting = settled(current, previous)
        ticks.append((sorted(ready), sorted(waiting)))
        previous = current
    arriving, lonely_src = (p.relative_to(raw).as_posix() for p in (edf, lonely))
    if any("link_" in name for tick in ticks for name in tick[0] + tick[1]):
        result.problems.append("the symlink out of the raw root was observed")
    if any(arriving in tick[0] for tick in ticks[:4]):
        result.problems.append(f"the arriving file was ready before it settled: {ticks}")
    # tick 4 adds the annotation (a change), so the file is ready only at tick 5
    current = list_recordings(raw).inputs()
    ready, waiting = settled(current, previous)
    if arriving not in ready:
        result.problems.append(f"the settled file was never ready: {sorted(ready)}")
    if lonely_src in ready or lonely_src not in waiting:
        result.problems.append("an EDF without annotation was treated as ready")
    result.rejections_expected = 3
    result.rejected_as_expected = 3 - len(result.problems)
    result.detail = (f"ready at ticks: {[len(t[0]) for t in ticks] + [len(ready)]}, "
                     f"waiting: {[len(t[1]) for t in ticks] + [len(waiting)]}")
    return result


def metadata_rows_of(materialize_result) -> list[dict]:
    """The rows of the npz_windows ``quarantined`` metadata table of a ``dg.materialize`` result."""
    event = materialize_result.get_asset_materialization_events()[0]
    table = event.materialization.metadata["quarantined"]
    return [dict(record.data) for record in table.value.records]


def materialize_npz_windows(raw_root: Path, cache_root: Path, results_root: Path, *,
                            log_level: str = "INFO"):
    """``npz_windows[train]`` materialized in process (an ephemeral Dagster instance)."""
    import dagster as dg

    from eeg_assets.orchestration.assets import build_cache_assets
    from eeg_assets.settings import Settings

    settings = Settings(raw_root=raw_root, cache_root=cache_root, results_root=results_root,
                        make_sample_if_missing=False)
    npz_windows = build_cache_assets(settings)[0]
    return dg.materialize([npz_windows], resources={"settings": settings}, partition_key="train",
                          run_config={"loggers": {"console": {"config": {"log_level": log_level}}}})
