"""``python -m eeg_assets.remote.evaluate_entry``: one evaluation reporting through Dagster Pipes.

The launcher passes an :class:`~eeg_assets.lib.model.evaluate_run.EvaluationRequest` as the Pipes
extra ``request``. Logs, the materialization of ``model_evaluation[<split>]`` and its check
results travel back over the Pipes channel (a file locally; on Modal the function's return value,
:mod:`eeg_assets.remote.pipes_channel`).
"""

from __future__ import annotations

from dagster_pipes import PipesContext, open_dagster_pipes

from eeg_assets.lib.model.evaluate_run import EvaluationRequest, run_evaluation
from eeg_assets.lib.scoring import SCORERS
from eeg_assets.remote.metadata import float_value, percent_value

#: The checks ``run_evaluation`` computes, in the order the asset declares them.
CHECKS = ("one_hypothesis_per_reference", "durations_match_references", "files_reproduce_scores",
          "tsv_files_reproduce_scores", "scores_finite")


def _figures(summary: dict) -> dict:
    """Each scorer's headline figures: sensitivity and PPV in percent, FA/24h, rounded for
    people (scores.json keeps them whole, as fractions), and its counts."""
    metadata = {}
    for scorer in SCORERS:
        counts = summary[scorer]
        metadata[f"{scorer}_sensitivity_pct"] = percent_value(counts["sensitivity"])
        metadata[f"{scorer}_fa_per_24h"] = float_value(counts["fa_per_24h"])
        metadata[f"{scorer}_ppv_pct"] = percent_value(counts["ppv"])
        for name in ("targets", "hits", "false_alarms"):
            metadata[f"{scorer}_{name}"] = float_value(counts[name])
    return metadata


def _per_subject(summary: dict) -> dict:
    """SzCORE averaged per subject (the SzCORE benchmark's way), beside the pooled figures."""
    per_subject = summary.get("szcore_per_subject") or {}
    if not per_subject:
        return {}
    rows = per_subject.get("by_subject") or []
    return {
        "szcore_subjects": {"raw_value": per_subject.get("subjects", len(rows)), "type": "int"},
        **{f"szcore_subject_{name}_pct": percent_value(per_subject.get(name))
           for name in ("sensitivity", "precision", "f1")},
        "szcore_subject_fa_per_24h": float_value(per_subject.get("fa_per_24h")),
        # subject -> false alarms, most first: who the detector troubles most
        "szcore_subject_false_alarms": {"raw_value": {
            row["subject"]: row["false_alarms"] for row in rows[:5]}, "type": "json"},
        "ref_tsv_dir": {"raw_value": summary["paths"].get("ref_tsv_dir", ""), "type": "path"},
        "hyp_tsv_dir": {"raw_value": summary["paths"].get("hyp_tsv_dir", ""), "type": "path"},
    }


def _sweep(summary: dict) -> list[dict]:
    """The operating curve, compact: per threshold each scorer's sensitivity (percent) and
    FA/24h, 4 significant digits."""
    points = []
    for row in summary["sweep"]:
        point = {"threshold": row["threshold"]}
        for scorer in SCORERS:
            figures = row[scorer]
            point[f"{scorer}_sensitivity_pct"] = percent_value(figures["sensitivity"])["raw_value"]
            point[f"{scorer}_fa_per_24h"] = float_value(figures["fa_per_24h"])["raw_value"]
        points.append(point)
    return points


def _report(pipes: PipesContext, summary: dict) -> None:
    metrics, chosen = summary["metrics"], summary["chosen_on_this_split"]
    paths = summary["paths"]
    pipes.report_asset_materialization(
        metadata={
            **_figures(summary),
            "auroc": float_value(metrics["auroc"]),
            "auroc_error_bound": float_value(metrics["auroc_error_bound"]),
            # Unrounded: model_evaluation[eval] applies exactly this value.
            "threshold": {"raw_value": summary["threshold"], "type": "float"},
            "threshold_chosen_on": {"raw_value": "this split (val)" if chosen else "val",
                                    "type": "text"},
            "threshold_rule": {"raw_value": summary["threshold_rule"], "type": "text"},
            "max_fa_per_24h": {"raw_value": summary["max_fa_per_24h"], "type": "float"},
            # Only where the threshold was chosen (val): eval applies it, it meets no target.
            **({"threshold_target_met": {"raw_value": bool(chosen["target_met"]), "type": "bool"}}
               if chosen else {}),
            "recordings_scored": {"raw_value": summary["recordings_scored"], "type": "int"},
            "recordings_without_windows": {
                "raw_value": len(summary["recordings_without_windows"]), "type": "int"},
            "recordings_excluded": {"raw_value": len(summary["excluded"]), "type": "int"},
            "excluded": {"raw_value": summary["excluded"], "type": "json"},
            "hours": float_value(metrics["hours"]),
            **_per_subject(summary),
            "sweep": {"raw_value": _sweep(summary), "type": "json"},
            "model_version": {"raw_value": summary["model_version"], "type": "text"},
            "index_version": {"raw_value": summary["index_version"], "type": "text"},
            "scores": {"raw_value": paths["scores"], "type": "path"},
            "ref_list": {"raw_value": paths["ref_list"], "type": "path"},
            "hyp_list": {"raw_value": paths["hyp_list"], "type": "path"},
        },
        data_version=summary["data_version"],
    )
    for name in CHECKS:
        check = summary["checks"][name]
        pipes.report_asset_check(name, passed=bool(check["passed"]),
                                 metadata={"detail": {"raw_value": check["detail"],
                                                      "type": "text"}})


def main(pipes: PipesContext) -> None:
    request = EvaluationRequest.from_dict(pipes.get_extra("request"))
    summary = run_evaluation(request, log=pipes.log.info)
    _report(pipes, summary)


if __name__ == "__main__":
    with open_dagster_pipes() as context:
        main(context)
