"""Fault cases of the ``.csv_bi`` annotation: missing, cut, malformed rows and header lines, and
the harmless variants (CRLF, BOM, spaces, column order, an extra column, ``.csv`` only) that must
still build; a ``.csv_bi`` and ``.csv`` that disagree on seizures build with a warning."""

from __future__ import annotations

from eeg_assets.lib.cache.ledger import BUILT
from eeg_assets.fault_injection.catalogue import (
    BCKG_LINE, SEIZURE_LINE, TEMPLATE_SECONDS, Placed, annotation_fault,
)
from eeg_assets.fault_injection.edf_surgery import edit_lines, replace_line, truncate


def _seizure_row(p: Placed, row: str) -> None:
    edit_lines(p.annotation, replace_line(SEIZURE_LINE, row))


@annotation_fault("no annotation file", "never assumed seizure-free",
                  description="annotation file deleted")
def ann_missing(p: Placed) -> None:
    p.annotation.unlink()


@annotation_fault("no column header line", description="annotation truncated to 0 bytes")
def ann_empty(p: Placed) -> None:
    truncate(p.annotation, 0)


@annotation_fault("no annotation rows after the column header",
                  description="annotation cut after the column header (no rows)")
def ann_header_only(p: Placed) -> None:
    edit_lines(p.annotation, lambda lines: lines[:6])


@annotation_fault(f"line {SEIZURE_LINE}: expected 5 fields, got 2",
                  description="annotation cut in the middle of the seizure row")
def ann_truncated_row(p: Placed) -> None:
    edit_lines(p.annotation, lambda lines: lines[:SEIZURE_LINE - 1] + ["TERM,20.50"])


@annotation_fault(f"line {SEIZURE_LINE}: start_time is not a number: '2O.5000'",
                  description="seizure start written '2O.5000' (letter O)")
def ann_malformed_number(p: Placed) -> None:
    _seizure_row(p, "TERM,2O.5000,45.2500,fnsz,1.0000")


@annotation_fault(f"line {SEIZURE_LINE}: stop_time is not finite: 'nan'",
                  description="seizure stop written 'nan'")
def ann_not_finite(p: Placed) -> None:
    _seizure_row(p, "TERM,20.5000,nan,fnsz,1.0000")


@annotation_fault(f"line {SEIZURE_LINE}: stop_time 20.5 is not after start_time 45.25",
                  description="seizure start and stop swapped")
def ann_stop_before_start(p: Placed) -> None:
    _seizure_row(p, "TERM,45.2500,20.5000,fnsz,1.0000")


@annotation_fault(f"line {BCKG_LINE}: negative start_time -1.0",
                  description="first row starts at -1 s")
def ann_negative_time(p: Placed) -> None:
    edit_lines(p.annotation, replace_line(BCKG_LINE, "TERM,-1.0000,20.5000,bckg,1.0000"))


@annotation_fault(outcome=BUILT,
                  warnings=("seizure at 60-95 s runs 15 s past the end of the signal (80 s)",
                            "clipped at 80 s"),
                  # mask [60 * 256, 80 * 256) in windows 0-60, 10-70, 20-80 s
                  seizure_samples=(0, 2560, 5120),
                  description="seizure 60-95 s in an 80 s recording: clipped, with a warning")
def ann_event_past_end(p: Placed) -> None:
    _seizure_row(p, "TERM,60.0000,95.0000,fnsz,1.0000")


@annotation_fault(f"line {SEIZURE_LINE}: event starts at 85.0 s, after the end of the recording",
                  description="seizure 85-90 s in an 80 s recording")
def ann_event_after_end(p: Placed) -> None:
    _seizure_row(p, "TERM,85.0000,90.0000,fnsz,1.0000")


@annotation_fault(f"line {SEIZURE_LINE}: unknown label 'seizure'",
                  description="seizure labelled 'seizure' instead of a TUSZ code")
def ann_unknown_label(p: Placed) -> None:
    _seizure_row(p, "TERM,20.5000,45.2500,seizure,1.0000")


@annotation_fault("line 6: column header lacks confidence",
                  description="'confidence' column dropped from the header")
def ann_missing_column(p: Placed) -> None:
    edit_lines(p.annotation, replace_line(6, "channel,start_time,stop_time,label"))


@annotation_fault("line 6: column header lacks start_time",
                  description="'start_time' column dropped from the header and every row")
def ann_missing_start_time(p: Placed) -> None:
    edit_lines(p.annotation, lambda lines: [
        x if x.startswith("#") else ",".join(f for i, f in enumerate(x.split(",")) if i != 1)
        for x in lines])


@annotation_fault("no '# duration = ... secs' header line",
                  description="the '# duration' comment line removed")
def ann_no_duration(p: Placed) -> None:
    edit_lines(p.annotation, lambda lines: [x for x in lines if not x.startswith("# duration")])


@annotation_fault("says duration 90 s but the EDF signal lasts 80 s",
                  description="'# duration = 90.0000 secs' for an 80 s EDF")
def ann_duration_mismatch(p: Placed) -> None:
    edit_lines(p.annotation, replace_line(3, "# duration = 90.0000 secs"))


@annotation_fault("not UTF-8 text", description="a Latin-1 byte in the bname comment")
def ann_not_utf8(p: Placed) -> None:
    data = p.annotation.read_bytes().replace(b"# bname = ", b"# bname = \xe9", 1)
    p.annotation.write_bytes(data)


@annotation_fault(outcome=BUILT, description="CRLF line endings")
def ann_crlf(p: Placed) -> None:
    p.annotation.write_bytes(p.annotation.read_bytes().replace(b"\n", b"\r\n"))


@annotation_fault(outcome=BUILT, description="UTF-8 byte-order mark")
def ann_bom(p: Placed) -> None:
    p.annotation.write_bytes(b"\xef\xbb\xbf" + p.annotation.read_bytes())


@annotation_fault(outcome=BUILT, description="spaces around every field and the header names")
def ann_spaces_around_fields(p: Placed) -> None:
    edit_lines(p.annotation, lambda lines: [
        x if x.startswith("#") else " " + " , ".join(x.split(",")) + "  " for x in lines])


@annotation_fault(outcome=BUILT,
                  description="BOM, CRLF and spaces together, columns in another order")
def ann_bom_crlf_spaces(p: Placed) -> None:
    def edit(lines: list[str]) -> list[str]:
        order = (1, 2, 0, 3, 4)  # start_time, stop_time, channel, label, confidence
        return [x if x.startswith("#") else
                " , ".join(x.split(",")[i] for i in order) for x in lines]
    edit_lines(p.annotation, edit)
    p.annotation.write_bytes(b"\xef\xbb\xbf" + p.annotation.read_bytes().replace(b"\n", b"\r\n"))


@annotation_fault(outcome=BUILT, description="only a .csv annotation (no .csv_bi)")
def ann_csv_only(p: Placed) -> None:
    p.annotation.rename(p.annotation.with_suffix(".csv"))


@annotation_fault(outcome=BUILT,
                  description="an extra named column ('comment', between start_time and "
                              "stop_time): read by header name, ignored")
def ann_extra_column(p: Placed) -> None:
    def edit(lines: list[str]) -> list[str]:
        out = []
        for x in lines:
            if x.startswith("#"):
                out.append(x)
                continue
            fields = x.split(",")
            extra = "comment" if fields[0] == "channel" else "reviewed by hand"
            out.append(",".join(fields[:2] + [extra] + fields[2:]))
        return out
    edit_lines(p.annotation, edit)


def _background_only(p: Placed, path) -> None:
    """``path`` becomes ``p``'s annotation with one bckg row over the whole recording."""
    lines = p.annotation.read_text().splitlines()[:BCKG_LINE - 1]
    path.write_text("\n".join(lines + [f"TERM,0.0000,{TEMPLATE_SECONDS:.4f},bckg,1.0000"]) + "\n")


#: The files of the disagreement cases (their folder names, see ``FaultCase.folder``).
_BI_SEIZURE = "ann-csv-bi-has-seizure_s001_t000"
_CSV_SEIZURE = "ann-csv-has-seizure_s001_t000"


@annotation_fault(outcome=BUILT,
                  warnings=(f"{_BI_SEIZURE}.csv_bi has 1 seizure event but {_BI_SEIZURE}.csv has "
                            "none", f"the recording is labelled from {_BI_SEIZURE}.csv_bi"),
                  description="the .csv_bi has the seizure, a .csv beside it has none: labelled "
                              "from the .csv_bi, with a warning naming both")
def ann_csv_bi_has_seizure(p: Placed) -> None:
    _background_only(p, p.annotation.with_suffix(".csv"))


@annotation_fault(outcome=BUILT,
                  warnings=(f"{_CSV_SEIZURE}.csv has 1 seizure event but {_CSV_SEIZURE}.csv_bi has "
                            "none", f"the recording is labelled from {_CSV_SEIZURE}.csv_bi"),
                  seizure_samples=(0, 0, 0),
                  description="the .csv has the seizure, the .csv_bi beside it has none: labelled "
                              "from the .csv_bi (no seizure), with a warning naming both")
def ann_csv_has_seizure(p: Placed) -> None:
    p.annotation.with_suffix(".csv").write_bytes(p.annotation.read_bytes())
    _background_only(p, p.annotation)
