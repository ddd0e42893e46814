"""The catalogue's machinery: the good template recording every case starts from, the split folder
it is copied into, :class:`FaultCase`, the decorators that register a case under the name of the
function that makes it, and :func:`lay_out_catalogue`."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from eeg_assets.lib.cache.ledger import BUILT, QUARANTINED
from eeg_assets.synthetic.edf_writer import Event, noise_generator, tusz_dir, write_recording

#: Outcomes a case may expect: the ledger's statuses, and IGNORED (never in the ledger, named on
#: an ``ignored:`` line of the build-cache summary).
IGNORED = "ignored"
#: The good recording every fault starts from: 80 s at 256 Hz, the 19 EEG channels plus one extra
#: signal at the EEG rate and one 1 Hz side channel (21 signals + EDF Annotations), one seizure.
TEMPLATE_SECONDS = 80
TEMPLATE_FS = 256
TEMPLATE_SEIZURE = (20.5, 45.25)
TEMPLATE_EVENTS = (Event(0.0, 20.5, "bckg"), Event(20.5, 45.25, "fnsz"), Event(45.25, 80.0, "bckg"))
#: Line numbers of the template's annotation rows (after 5 comment lines and the column header).
BCKG_LINE, SEIZURE_LINE = 7, 8

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
    #: Good recordings a case lays out beside its input (they must be built too).
    also_built: list[str] = field(default_factory=list)

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
    name: str         # the function that makes the input, e.g. "edf_zero_bytes"
    group: str        # "edf", "annotation", "drop"
    outcome: str      # QUARANTINED, BUILT or IGNORED
    reasons: tuple[str, ...]  # substrings the reason must contain (empty for BUILT)
    description: str
    make: Callable[[CaseContext, str], str]  # make(ctx, folder) lays the input out: its source
    #: For BUILT cases: (details key, substring) the ledger entry's details must show.
    details: tuple[tuple[str, str], ...] = ()
    #: For BUILT cases: substrings of the one warning it must be built with (in the ledger, the
    #: CLI's "built with warnings" line, the Dagster ``warnings`` table); none: no warning at all.
    warnings: tuple[str, ...] = ()
    #: For BUILT cases whose labels differ from the template's: the expected seizure samples per
    #: window (else the untouched template's are expected).
    seizure_samples: tuple[int, ...] | None = None

    def __str__(self) -> str:
        return self.name

    @property
    def folder(self) -> str:
        """Patient folder and stem prefix of the case's files (``edf-zero-bytes``): TUSZ stems
        split patient, session and take at ``_``, so the name's ``_`` become ``-``."""
        return self.name.replace("_", "-")

    def lay_out(self, ctx: CaseContext) -> str:
        """Make the input in ``ctx.split_dir``; returns its source (path below the split)."""
        return self.make(ctx, self.folder)


CATALOGUE: list[FaultCase] = []


def fault_case(group: str, outcome: str, *reasons: str, description: str,
               details: tuple[tuple[str, str], ...] = (), **expected):
    """Register the decorated ``make(ctx, folder) -> source`` as the case named after it."""
    def register(make: Callable[[CaseContext, str], str]) -> Callable[[CaseContext, str], str]:
        CATALOGUE.append(FaultCase(make.__name__, group, outcome, tuple(reasons), description,
                                   make, details, **expected))
        return make
    return register


def damage_case(group: str, *reasons: str, description: str, outcome: str = QUARANTINED,
                details: tuple[tuple[str, str], ...] = (), **expected):
    """Register the decorated ``damage(placed)`` as the case named after it: a copy of the
    template is placed in the case's folder and damaged."""
    def register(damage: Callable[[Placed], None]) -> Callable[[Placed], None]:
        def make(ctx: CaseContext, folder: str) -> str:
            placed = ctx.place(folder)
            damage(placed)
            return placed.source
        make.__name__ = damage.__name__
        fault_case(group, outcome, *reasons, description=description, details=details,
                   **expected)(make)
        return damage
    return register


edf_fault = partial(damage_case, "edf")
annotation_fault = partial(damage_case, "annotation")


def good_stems(n: int) -> list[str]:
    return [f"good-{i:02d}_s001_t000" for i in range(n)]


@dataclass
class Catalogue:
    split_dir: Path
    cases: list[tuple[FaultCase, str]]   # (case, source of the input under test)
    good_sources: list[str]              # good recordings (incl. those a case lays out)

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
    laid = [(case, case.lay_out(ctx)) for case in (CATALOGUE if cases is None else cases)]
    return Catalogue(Path(split_dir), laid, good + ctx.also_built)
