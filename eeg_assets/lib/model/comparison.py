"""Experiments side by side: a leaderboard and their operating curves.

Each row is one evaluated experiment: its model's size and training, its AUROC on val, and on
eval, at the threshold chosen on val, every scorer's sensitivity (in percent) and false alarms
per 24 h (OVERLAP and TAES as NEDC pools them over files; SzCORE pooled over files as NEDC does
and, where the evaluation computed it, averaged per subject as SzCORE's benchmark does).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields

COMPARISON_DIR = "comparison"
LEADERBOARD_NAME = "leaderboard.csv"
PLOT_NAME = "operating_curves.png"


@dataclass
class ExperimentRow:
    """One experiment's figures; sensitivities in percent (``_pct``, as ``model_evaluation``
    reports them), false alarms per 24 h.

    ``None`` where the figure was not computed (e.g. SzCORE per subject by an older evaluation).
    """

    experiment: str
    model_factory: str = ""
    model_parameters: int | None = None
    epochs: int | None = None
    val_auroc: float | None = None
    threshold: float | None = None
    #: The rule the threshold was chosen by on val: the most sensitive within this many FA/24h.
    max_fa_per_24h: float | None = None
    overlap_sensitivity_pct: float | None = None
    overlap_fa_per_24h: float | None = None
    taes_sensitivity_pct: float | None = None
    taes_fa_per_24h: float | None = None
    szcore_sensitivity_pct: float | None = None
    szcore_fa_per_24h: float | None = None
    szcore_subject_sensitivity_pct: float | None = None
    szcore_subject_fa_per_24h: float | None = None
    #: ``"<subject> (<false alarms>)"`` of the subjects with the most false alarms on eval.
    most_false_alarms: str = ""
    #: Eval's sweep: ``[{threshold, overlap_sensitivity_pct, overlap_fa_per_24h, szcore_...}]``.
    sweep: list[dict] = field(default_factory=list)


#: Leaderboard columns (the sweep is plotted, not tabled).
COLUMNS = tuple(f.name for f in fields(ExperimentRow) if f.name != "sweep")


def ranked(rows: Sequence[ExperimentRow]) -> list[ExperimentRow]:
    """Best first: eval OVERLAP sensitivity, then fewer false alarms; unevaluated last."""
    def key(row: ExperimentRow):
        sensitivity = row.overlap_sensitivity_pct
        return (sensitivity is None, -(sensitivity or 0.0), row.overlap_fa_per_24h or 0.0,
                row.experiment)
    return sorted(rows, key=key)


def leaderboard_csv(rows: Sequence[ExperimentRow]) -> bytes:
    """The leaderboard as CSV (one header line, one line per experiment, best first)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in ranked(rows):
        values = {k: v for k, v in asdict(row).items() if k in COLUMNS}
        writer.writerow({k: "" if v is None else v for k, v in values.items()})
    return out.getvalue().encode()


def curves_png(rows: Sequence[ExperimentRow], title: str = "eval") -> bytes:
    """Sensitivity against FA/24h on a log axis (0.1 to 1,000), OVERLAP and SzCORE side by
    side, one curve per experiment, its val-chosen operating point marked, and each rule's
    target (``max_fa_per_24h``) as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, scorer in zip(axes, ("overlap", "szcore")):
        for row in ranked(rows):
            points = sorted((p[f"{scorer}_fa_per_24h"], p[f"{scorer}_sensitivity_pct"])
                            for p in row.sweep
                            if p.get(f"{scorer}_fa_per_24h") is not None
                            and p.get(f"{scorer}_sensitivity_pct") is not None)
            if points:
                line, = ax.plot([max(x, 0.1) for x, _ in points], [y for _, y in points],
                                label=row.experiment)
            chosen = (getattr(row, f"{scorer}_fa_per_24h"),
                      getattr(row, f"{scorer}_sensitivity_pct"))
            if None not in chosen:
                ax.plot(max(chosen[0], 0.1), chosen[1], "o",
                        color=line.get_color() if points else None)
        for target in sorted({row.max_fa_per_24h for row in rows
                              if row.max_fa_per_24h is not None and 0.1 <= row.max_fa_per_24h
                              <= 1000}):
            ax.axvline(target, color="grey", linestyle="--", linewidth=1,
                       label=f"target {target:g} FA/24h")
        ax.set_xscale("log")
        ax.set_xlim(0.1, 1000)
        ax.set_xlabel("false alarms per 24 h")
        ax.set_title(f"{scorer.upper()} on {title}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("sensitivity (%)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()
