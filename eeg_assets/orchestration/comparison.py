"""model_comparison: every evaluated experiment side by side (leaderboard and curves).

It reads what Dagster recorded for each experiment (``trained_model[<experiment>]``,
``model_evaluation[<experiment>|val]`` and ``[<experiment>|eval]``), writes
``<results>/comparison/leaderboard.csv`` and ``operating_curves.png``, and shows the leaderboard
as a table in its metadata.
"""


import json
from pathlib import Path

import dagster as dg

from eeg_assets.lib.files import write_bytes_atomic
from eeg_assets.lib.model.comparison import (
    COLUMNS,
    COMPARISON_DIR,
    LEADERBOARD_NAME,
    PLOT_NAME,
    ExperimentRow,
    curves_png,
    leaderboard_csv,
    ranked,
)
from eeg_assets.lib.model.experiment import Experiment
from eeg_assets.orchestration.assets import png_markdown
from eeg_assets.settings import Settings

ASSET = "model_comparison"
SCORERS = ("overlap", "taes", "szcore")


def _latest_metadata(instance: dg.DagsterInstance, asset: str, partition: str) -> dict | None:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]),
        limit=1).records
    if not records:
        return None
    return {key: value.value for key, value in records[0].asset_materialization.metadata.items()}


def _row(instance: dg.DagsterInstance, experiment: Experiment) -> ExperimentRow | None:
    evaluated = _latest_metadata(instance, "model_evaluation", f"{experiment.name}|eval")
    if evaluated is None:
        return None
    trained = _latest_metadata(instance, "trained_model", experiment.name) or {}
    row = ExperimentRow(experiment=experiment.name, model_factory=experiment.train.model.factory,
                        model_parameters=trained.get("model_parameters"),
                        epochs=trained.get("epochs"), val_auroc=trained.get("val_auroc"),
                        threshold=evaluated.get("threshold"),
                        max_fa_per_24h=experiment.max_fa_per_24h,
                        sweep=list(evaluated.get("sweep") or []))
    # Sensitivities in percent, as model_evaluation reports them (an evaluation older than the
    # _pct keys has none: evaluate it again; its fractions are never mixed in).
    for scorer in SCORERS:
        setattr(row, f"{scorer}_sensitivity_pct", evaluated.get(f"{scorer}_sensitivity_pct"))
        setattr(row, f"{scorer}_fa_per_24h", evaluated.get(f"{scorer}_fa_per_24h"))
    row.szcore_subject_sensitivity_pct = evaluated.get("szcore_subject_sensitivity_pct")
    row.szcore_subject_fa_per_24h = evaluated.get("szcore_subject_fa_per_24h")
    worst = evaluated.get("szcore_subject_false_alarms") or {}
    if isinstance(worst, dict):
        top = sorted(worst.items(), key=lambda item: -item[1])[:3]
        row.most_false_alarms = ", ".join(f"{subject} ({count:g})" for subject, count in top
                                          if count)
    return row


def build_model_comparison(experiments: list[Experiment]) -> dg.AssetsDefinition:
    """``model_comparison``: one leaderboard over every experiment evaluated on eval."""

    @dg.asset(
        name=ASSET,
        deps=[dg.AssetDep("model_evaluation"), dg.AssetDep("trained_model")],
        group_name="model",
        kinds={"csv"},
        description="Every experiment evaluated on eval, best first: model size and training, "
                    "val AUROC, and on eval at the val-chosen threshold OVERLAP, TAES and "
                    "SzCORE sensitivity (%) and FA/24h (SzCORE pooled over files and averaged "
                    "per subject); `<results>/comparison/leaderboard.csv` and the operating "
                    "curves.",
    )
    def model_comparison(context: dg.AssetExecutionContext,
                         settings: dg.ResourceParam[Settings]) -> dg.MaterializeResult:
        rows = [row for row in (_row(context.instance, e) for e in experiments) if row]
        missing = [e.name for e in experiments if e.name not in {r.experiment for r in rows}]
        if not rows:
            raise dg.Failure("no experiment has been evaluated on eval yet: materialize "
                             "model_evaluation[<experiment>|eval] first")
        if missing:
            context.log.warning(f"not evaluated on eval, left out: {', '.join(missing)}")
        out = Path(settings.results_root) / COMPARISON_DIR
        out.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(out / LEADERBOARD_NAME, leaderboard_csv(rows))
        png = curves_png(rows)
        write_bytes_atomic(out / PLOT_NAME, png)
        records = [dg.TableRecord({k: ("" if v is None else v) for k, v in
                                   json.loads(json.dumps(vars(row))).items() if k in COLUMNS})
                   for row in ranked(rows)]
        schema = dg.TableSchema(columns=[
            dg.TableColumn(name, "string" if name in ("experiment", "model_factory",
                                                      "most_false_alarms") else "float")
            for name in COLUMNS])
        return dg.MaterializeResult(metadata={
            "leaderboard": dg.MetadataValue.table(records, schema=schema),
            "experiments": len(rows),
            "best": rows and ranked(rows)[0].experiment,
            "not_evaluated": ", ".join(missing) or "none",
            "path": dg.MetadataValue.path(str(out / LEADERBOARD_NAME)),
            "operating_curves": png_markdown(png, "sensitivity against FA/24h per experiment"),
        })

    return model_comparison
