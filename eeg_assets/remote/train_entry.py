"""``python -m eeg_assets.remote.train_entry``: one training run reporting through Dagster Pipes.

The launcher passes a :class:`~eeg_assets.lib.model.train_run.TrainingRequest` as the Pipes extra
``request``. Logs, the final materialization (with the history of every epoch) and two check
results travel back over the Pipes channel (a file locally; on Modal the function's return value,
:mod:`eeg_assets.remote.pipes_channel`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from dagster_pipes import PipesContext, open_dagster_pipes

from eeg_assets.lib.model.train_run import (
    TrainingRequest,
    model_version,
    non_finite_metrics,
    run_training,
)
from eeg_assets.lib.scoring import in_percent
from eeg_assets.remote.metadata import float_value as _float
from eeg_assets.remote.metadata import percent_value, text_value

#: Tolerance when the checkpoint is re-evaluated: bit-identical on the same CPU setup, float
#: rounding elsewhere (different thread counts or a GPU).
REPRODUCTION_TOLERANCE = 1e-4


def _report(pipes: PipesContext, summary: dict) -> None:
    best = summary["best_metrics"]
    reproduced = summary["reproduced_metrics"]
    reported_auroc, reproduced_auroc = best.get("val_auroc"), reproduced.get("val_auroc")
    pipes.report_asset_materialization(
        metadata={
            "val_auroc": _float(best.get("val_auroc")),
            # At the training threshold, NEDC OVERLAP and SzCORE (model_evaluation[val] agrees).
            "val_overlap_sensitivity_pct": percent_value(best.get("val_overlap_sensitivity")),
            "val_overlap_fa_per_24h": _float(best.get("val_overlap_fa_per_24h")),
            "val_szcore_sensitivity_pct": percent_value(best.get("val_szcore_sensitivity")),
            "val_szcore_fa_per_24h": _float(best.get("val_szcore_fa_per_24h")),
            "val_loss": _float(best.get("val_loss")),
            "best_epoch": {"raw_value": summary["best_epoch"], "type": "int"},
            "epochs": {"raw_value": len(summary["history"]), "type": "int"},
            # each epoch's figures, sensitivities, PPV and F1 in percent (the checkpoint and
            # training_summary.json keep fractions)
            "history": {"raw_value": [in_percent(epoch) for epoch in summary["history"]],
                        "type": "json"},
            "train_seconds": _float(summary["train_seconds"]),
            "windows_per_s": _float(summary["windows_per_s"]),
            "device": {"raw_value": summary["device"], "type": "text"},
            "model_factory": {"raw_value": summary.get("model_factory", ""), "type": "text"},
            "model_parameters": {"raw_value": summary.get("model_parameters"), "type": "int"},
            "stopped_early": {"raw_value": bool(summary.get("stopped_early")), "type": "bool"},
            "pos_weight": _float(summary["pos_weight"]),
            "seizure_ratio": _float(summary["seizure_ratio"]),
            "train_windows": {"raw_value": summary["train_windows"], "type": "int"},
            "val_windows": {"raw_value": summary["val_windows"], "type": "int"},
            "checkpoint": {"raw_value": summary["best_checkpoint"], "type": "path"},
            "checkpoint_mb": _float(summary["checkpoint_bytes"] / 1e6),
            "hypotheses_dir": {"raw_value": summary["hypotheses_dir"], "type": "path"},
            # What the run trained and validated on, by content (the upstream data versions).
            **{f"consumed_{name}_version": {"raw_value": version, "type": "text"}
               for name, version in summary["data_versions"].items()},
        },
        data_version=model_version(summary["config_version"], summary["data_versions"]),
    )
    reproduces = (reported_auroc is not None and reproduced_auroc is not None and (
        (math.isnan(reported_auroc) and math.isnan(reproduced_auroc))
        or abs(reported_auroc - reproduced_auroc) <= REPRODUCTION_TOLERANCE))
    # As text: the check page would plot every experiment's AUROC as one series (and the
    # constant tolerance as a flat line).
    pipes.report_asset_check(
        "checkpoint_reproduces_metrics", passed=bool(reproduces),
        metadata={"reported_val_auroc": text_value(reported_auroc),
                  "reproduced_val_auroc": text_value(reproduced_auroc),
                  "difference": text_value(
                      abs(reported_auroc - reproduced_auroc)
                      if reported_auroc is not None and reproduced_auroc is not None else None),
                  "tolerance": text_value(REPRODUCTION_TOLERANCE)})
    non_finite = non_finite_metrics(summary)
    pipes.report_asset_check(
        "metrics_finite", passed=not non_finite,
        metadata={"non_finite": {"raw_value": ", ".join(non_finite) or "none", "type": "text"}})


def main(pipes: PipesContext, after_epoch: Callable[[], None] | None = None) -> None:
    """Train as the Pipes extra ``request`` says and report the result.

    ``after_epoch`` runs once each epoch's checkpoint is written (on Modal: commit the volume, so
    a restarted call resumes from it). The history in the materialization is the checkpoint's,
    each epoch once, however often the run was restarted.
    """
    request = TrainingRequest.from_dict(pipes.get_extra("request"))
    summary = run_training(request, log=pipes.log.info,
                           on_epoch=(lambda metrics: after_epoch()) if after_epoch else None)
    _report(pipes, summary)


if __name__ == "__main__":
    with open_dagster_pipes() as context:
        main(context)
