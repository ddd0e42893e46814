"""Fault cases of what lands in the raw folder: symlinks out of it, to nothing or to another
recording of the split, and the same recording dropped twice."""

from __future__ import annotations

import shutil

from eeg_assets.lib.cache.ledger import QUARANTINED
from eeg_assets.synthetic.edf_writer import tusz_dir
from eeg_assets.fault_injection.catalogue import IGNORED, CaseContext, fault_case


@fault_case("drop", IGNORED, "symlink to", "outside",
            description="an EDF symlink in the split pointing outside the raw root")
def drop_symlink_outside(ctx: CaseContext, folder: str) -> str:
    target_dir = ctx.outside_dir / "elsewhere"
    target_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ctx.template.edf, target_dir / "secret_s001_t000.edf")
    shutil.copyfile(ctx.template.annotation, target_dir / "secret_s001_t000.csv_bi")
    link_dir = tusz_dir(ctx.split_dir, folder)
    link_dir.mkdir(parents=True, exist_ok=True)
    link = link_dir / f"{folder}_s001_t000.edf"
    link.symlink_to(target_dir / "secret_s001_t000.edf")
    (link_dir / f"{folder}_s001_t000.csv_bi").symlink_to(target_dir / "secret_s001_t000.csv_bi")
    return link.relative_to(ctx.split_dir).as_posix()


@fault_case("drop", IGNORED, "broken symlink",
            description="an EDF symlink whose target does not exist")
def drop_broken_symlink(ctx: CaseContext, folder: str) -> str:
    link_dir = tusz_dir(ctx.split_dir, folder)
    link_dir.mkdir(parents=True, exist_ok=True)
    link = link_dir / f"{folder}_s001_t000.edf"
    link.symlink_to(link_dir / "gone_s001_t000.edf")
    return link.relative_to(ctx.split_dir).as_posix()


@fault_case("drop", QUARANTINED, "duplicate recording name",
            "drop-duplicate-stem/s001_2015/01_tcp_ar/drop-duplicate-stem_s001_t000.edf "
            "has the same stem",
            description="the same recording dropped twice (same stem in two session folders)")
def drop_duplicate_stem(ctx: CaseContext, folder: str) -> str:
    ctx.also_built.append(ctx.place(folder, session="s001_2015").source)  # the first is kept
    return ctx.place(folder, session="s002_2016").source


@fault_case("drop", IGNORED,
            "symlink to drop-symlink-inside/s001_2015/01_tcp_ar/drop-symlink-inside_s001_t000.edf"
            ", listed there",
            description="an EDF symlink (with its .csv_bi) in another session folder pointing at "
                        "another EDF of the split: ignored, the recording built once")
def drop_symlink_inside(ctx: CaseContext, folder: str) -> str:
    target = ctx.place(folder)  # the real recording: built once, under its own path
    ctx.also_built.append(target.source)
    link_dir = tusz_dir(ctx.split_dir, folder, "s002_2016")
    link_dir.mkdir(parents=True, exist_ok=True)
    link = link_dir / f"{folder}_s002_t000.edf"  # another stem: built twice if it were listed
    link.symlink_to(target.edf)
    (link_dir / f"{folder}_s002_t000.csv_bi").symlink_to(target.annotation)
    return link.relative_to(ctx.split_dir).as_posix()
