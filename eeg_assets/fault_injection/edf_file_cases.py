"""Fault cases of the EDF file as a whole: its bytes, its size, its main header and its name."""

from __future__ import annotations

import random

from eeg_assets.lib.cache.ledger import BUILT
from eeg_assets.fault_injection.catalogue import CaseContext, Placed, edf_fault, fault_case
from eeg_assets.fault_injection.edf_surgery import (
    EdfLayout, set_header_field, set_signal_field, truncate,
)


@edf_fault("0 bytes, shorter than an EDF header", description="EDF truncated to 0 bytes")
def edf_zero_bytes(p: Placed) -> None:
    truncate(p.edf, 0)


@edf_fault("unreadable EDF", "not EDF(+) or BDF(+) compliant",
           description="EDF replaced by 64 KiB of random bytes")
def edf_random_bytes(p: Placed) -> None:
    p.edf.write_bytes(random.Random(1).randbytes(64 * 1024))


@edf_fault("truncated in the header", "declares 5888 header bytes",
           description="EDF cut 300 bytes into the signal headers")
def edf_truncated_in_header(p: Placed) -> None:
    truncate(p.edf, 256 + 300)


@edf_fault("its header declares 80 data records", "only 40 complete records are present",
           description="EDF cut in the middle of data record 41 (a half-finished copy)")
def edf_truncated_mid_data(p: Placed) -> None:
    layout = EdfLayout.read(p.edf)
    truncate(p.edf, layout.header_bytes + 40 * layout.record_bytes + 1000)


@edf_fault("its header declares 90 data records", "only 80 complete records are present",
           description="header record count 80 -> 90 (more than the file holds)")
def edf_record_count_too_high(p: Placed) -> None:
    set_header_field(p.edf, "n_records", "90")


@edf_fault("holds 80 complete data records", "its header declares only 70",
           description="header record count 80 -> 70 (less than the file holds)")
def edf_record_count_too_low(p: Placed) -> None:
    set_header_field(p.edf, "n_records", "70")


@edf_fault("its header declares 80 data records of 10868 bytes",
           description="C3's samples per record 256 -> 512, so records no longer fit the size")
def edf_samples_per_record(p: Placed) -> None:
    set_signal_field(p.edf, "EEG C3-REF", "samples_per_record", "512")


@edf_fault("says duration 80 s but the EDF signal lasts 160 s",
           description="header record duration 1 s -> 2 s (the signal would last twice as long "
                       "as its annotation says)")
def edf_record_duration(p: Placed) -> None:
    set_header_field(p.edf, "record_duration", "2")


@edf_fault(outcome=BUILT, details=(("header_repair", "01:01:85"),),
           description="TUSZ start date '01:01:85' in the header: repaired in a temporary copy")
def edf_start_date_quirk(p: Placed) -> None:
    raw = bytearray(p.edf.read_bytes())
    # as in the corpus: an EDF+ recording field that agrees with the 1985 start date
    raw[88:168] = bytes(raw[88:168]).replace(b"Startdate 01-JAN-2008", b"Startdate 01-JAN-1985")
    raw[168:176] = b"01:01:85"
    p.edf.write_bytes(bytes(raw))


@fault_case("edf", BUILT, description="recording renamed 'name with spaces (copy)_s001_t000.edf'")
def edf_name_with_spaces(ctx: CaseContext, folder: str) -> str:
    return ctx.place(folder, stem="name with spaces (copy)_s001_t000").source


@fault_case("edf", BUILT, description="recording renamed 'pätiënt-ñ_s001_t000.edf' (non-ASCII)")
def edf_name_non_ascii(ctx: CaseContext, folder: str) -> str:
    return ctx.place(folder, stem="pätiënt-ñ_s001_t000").source
