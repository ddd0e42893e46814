"""One evaluation of the trained model on a cache split: what the local launcher and Modal execute.

The request pins what is evaluated: the split's ``_dataset_index.json`` by content version, the
checkpoint by the ``trained_model`` data version it must carry, and the threshold (``None`` on
val: chosen there by the request's :class:`ThresholdRule`; on eval: val's choice, unchanged).
The run predicts every window of the split once, scores every recording at every threshold of
the sweep (:mod:`eeg_assets.lib.model.evaluation`), and writes into ``out_dir``::

    ref/<bname>.csv_bi   the references: annotation events (.csv channels merged), its duration
    hyp/<bname>.csv_bi   the hypotheses at the operating threshold, one per reference
    ref.list, hyp.list   their absolute paths, in the same order: nedc_eeg_eval ref.list hyp.list
    ref_tsv/sub-<patient>/<bname>_events.tsv   the same references and hypotheses in SzCORE's
    hyp_tsv/sub-<patient>/<bname>_events.tsv   HED-SCORE format (eeg_assets.lib.scoring.tsv):
                         python -m szcore_evaluation ref_tsv hyp_tsv out.json
    scores.json          totals of the three scorers, SzCORE averaged per subject (patient),
                         AUROC, the sweep, the threshold and its rule

It then reads the lists and the TSV folders back through
:func:`eeg_assets.lib.scoring.score_paths`, as the ``score`` command does, and records whether the
files give the figures it reports.

Two ways to report, both in the summary: NEDC's, pooled over files (``overlap``, ``taes``,
``szcore``: counts and durations summed, figures from the sums), and SzCORE's benchmark's,
averaged per subject (``szcore_per_subject``: each patient's SzCORE figures, then their mean over
patients, :mod:`eeg_assets.lib.scoring.subjects`).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from eeg_assets.lib.config import DEFAULT_CONFIG, CacheConfig
from eeg_assets.lib.dataset.pinned import PinnedFile, StaleInputError, pinned_index
from eeg_assets.lib.dataset.splits import patient_id
from eeg_assets.lib.dataset.torch_datasets import EEGWindowDataset
from eeg_assets.lib.files import write_bytes_atomic
from eeg_assets.lib.model.evaluation import ValidationAccumulator, non_finite_figures
from eeg_assets.lib.model.hypotheses import Event, write_events_tsv
from eeg_assets.lib.model.operating_point import SWEEP_THRESHOLDS, ThresholdRule
from eeg_assets.lib.model.train_run import model_version
from eeg_assets.lib.model.training import load_checkpoint, score_checkpoint
from eeg_assets.lib.scoring import (
    SCORERS, SUBJECT_FIGURES, ScoreReport, ScoringError, pair_files, read_events, score_paths,
    tsv_path,
)
from eeg_assets.lib.scoring.events import NEDC_DECIMALS

SCORES_NAME = "scores.json"
REF_DIR, HYP_DIR = "ref", "hyp"
REF_LIST, HYP_LIST = "ref.list", "hyp.list"
REF_TSV_DIR, HYP_TSV_DIR = "ref_tsv", "hyp_tsv"


@dataclass(frozen=True)
class EvaluationRequest:
    split: str
    cache_dir: Path
    index: PinnedFile
    checkpoint: Path
    #: The ``trained_model`` data version the checkpoint must carry.
    model_version: str
    out_dir: Path
    #: ``None``: choose on this split by ``rule`` (val); otherwise apply it unchanged (eval).
    threshold: float | None
    rule: ThresholdRule = ThresholdRule()
    cache: CacheConfig = DEFAULT_CONFIG
    device: str = "auto"
    num_workers: int = 0
    cpu_threads: int | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(cache_dir=str(self.cache_dir), index=self.index.to_dict(),
                    checkpoint=str(self.checkpoint), out_dir=str(self.out_dir),
                    rule=self.rule.to_dict(), cache=self.cache.to_dict())
        return data

    @classmethod
    def from_dict(cls, data: dict) -> EvaluationRequest:
        fields = dict(data)
        fields.update(cache_dir=Path(data["cache_dir"]), index=PinnedFile.from_dict(data["index"]),
                      checkpoint=Path(data["checkpoint"]), out_dir=Path(data["out_dir"]),
                      rule=ThresholdRule.from_dict(data["rule"]),
                      cache=CacheConfig.from_dict(data["cache"]))
        return cls(**fields)


def _checked_checkpoint(request: EvaluationRequest) -> dict:
    """The checkpoint's training record, refused unless it is the materialized trained_model."""
    try:
        _model, checkpoint = load_checkpoint(request.checkpoint)
    except FileNotFoundError:
        raise StaleInputError(f"checkpoint {request.checkpoint} is missing: materialize "
                              "trained_model first") from None
    found = model_version(checkpoint["train_config_version"], checkpoint["data_versions"])
    if found != request.model_version:
        raise StaleInputError(
            f"checkpoint {request.checkpoint} is trained_model version {found}, but the "
            f"materialized trained_model is {request.model_version}: materialize trained_model "
            "again (or evaluate the checkpoint it wrote)")
    return checkpoint


def _write_outputs(out_dir: Path, accumulator: ValidationAccumulator,
                   threshold: float) -> tuple[Path, Path]:
    """ref/, hyp/ and the two lists; leftovers of an earlier evaluation are removed first."""
    for folder in (REF_DIR, HYP_DIR):
        shutil.rmtree(out_dir / folder, ignore_errors=True)
    refs = accumulator.write_references(out_dir / REF_DIR)
    hyps = accumulator.write_hypotheses(out_dir / HYP_DIR, threshold)
    lists = []
    for name, paths in ((REF_LIST, refs), (HYP_LIST, hyps)):
        write_bytes_atomic(out_dir / name,
                           "".join(f"{p.resolve()}\n" for p in paths).encode())
        lists.append(out_dir / name)
    return lists[0], lists[1]


def write_tsv_files(out_dir: Path, accumulator: ValidationAccumulator,
                    threshold: float) -> tuple[list[Path], list[Path]]:
    """The references and the hypotheses at ``threshold`` as SzCORE's ``*_events.tsv`` files.

    ``<out_dir>/ref_tsv/sub-<patient>/<bname>_events.tsv`` and the same under ``hyp_tsv/``, one
    pair per scored recording (the same events, durations and confidences as the ``.csv_bi``
    files), the patient being the TUSZ patient id of the recording
    (:func:`~eeg_assets.lib.dataset.splits.patient_id`). Leftovers of an earlier evaluation are
    removed first.

    Returns
    -------
    (refs, hyps) : two lists of Path
        In bname order.
    """
    out_dir = Path(out_dir)
    for folder in (REF_TSV_DIR, HYP_TSV_DIR):
        shutil.rmtree(out_dir / folder, ignore_errors=True)
    refs, hyps = [], []
    for scored in sorted(accumulator.recordings, key=lambda r: r.bname):
        subject, duration = patient_id(scored.bname), scored.reference.duration_s
        refs.append(write_events_tsv(tsv_path(out_dir / REF_TSV_DIR, scored.bname, subject),
                                     duration, [Event(start, stop) for start, stop
                                                in scored.reference.seizures]))
        hyps.append(write_events_tsv(tsv_path(out_dir / HYP_TSV_DIR, scored.bname, subject),
                                     duration, scored.hypotheses[threshold]))
    return refs, hyps


def check_tsv_files(ref_dir: Path, hyp_dir: Path, accumulator: ValidationAccumulator,
                    threshold: float, cache: CacheConfig = DEFAULT_CONFIG) -> dict[str, dict]:
    """Score the two TSV folders as ``score`` does and compare with the reported figures.

    Returns
    -------
    dict
        ``{"tsv_files_reproduce_scores": {"passed": bool, "detail": str}}``: one pair per scored
        recording, the three scorers' totals and SzCORE's per-subject figures equal.
    """
    in_memory = accumulator.totals(threshold)
    try:
        report = score_paths(Path(ref_dir), Path(hyp_dir), cache, keep_files=False)
    except ScoringError as exc:
        return {"tsv_files_reproduce_scores": {"passed": False, "detail": str(exc)}}
    differing = [name for name in SCORERS
                 if not _same(report.totals[name].as_dict(), in_memory.totals[name].as_dict())]
    from_files, expected = report.per_subject(), in_memory.per_subject()
    if report.subjects.keys() != in_memory.subjects.keys() or not _same(
            {k: from_files[k] for k in SUBJECT_FIGURES},
            {k: expected[k] for k in SUBJECT_FIGURES}):
        differing.append("szcore per subject")
    passed = not differing and report.recordings == in_memory.recordings
    return {"tsv_files_reproduce_scores": {
        "passed": passed,
        "detail": (f"scored {report.recordings} pairs of {ref_dir} and {hyp_dir} for "
                   f"{in_memory.recordings} recordings; figures differ for: "
                   f"{', '.join(differing) or 'none'}")}}


def check_files(ref_list: Path, hyp_list: Path, accumulator: ValidationAccumulator,
                threshold: float, cache: CacheConfig = DEFAULT_CONFIG) -> dict[str, dict]:
    """Read the written lists back as ``score`` and NEDC do and check them.

    Returns
    -------
    dict
        ``{check name: {"passed": bool, "detail": str}}`` for ``one_hypothesis_per_reference``
        (the lists pair every scored recording with its own hypothesis, by position),
        ``durations_match_references`` (every pair's ``# duration`` equal to 4 decimals) and
        ``files_reproduce_scores`` (scoring the files gives the reported totals).
    """
    try:
        pairs = pair_files(ref_list, hyp_list)
    except ScoringError as exc:
        failed = {"passed": False, "detail": str(exc)}
        return {name: failed for name in ("one_hypothesis_per_reference",
                                          "durations_match_references",
                                          "files_reproduce_scores")}
    scored = sorted(r.bname for r in accumulator.recordings)
    unpaired = [f"{r.name} / {h.name}" for r, h in pairs if r.stem != h.stem]
    one_each = not unpaired and [r.stem for r, _h in pairs] == scored
    mismatched, report = [], ScoreReport()
    try:
        for ref_path, hyp_path in pairs:
            ref, hyp = read_events(ref_path, cache), read_events(hyp_path, cache)
            if round(ref.duration_s, NEDC_DECIMALS) != round(hyp.duration_s, NEDC_DECIMALS):
                mismatched.append(f"{hyp_path.name}: {hyp.duration_s:.4f} s, reference "
                                  f"{ref.duration_s:.4f} s")
                continue
            report.add(ref, hyp, keep_file=False)
    except ScoringError as exc:
        mismatched.append(str(exc))
    in_memory = accumulator.totals(threshold)
    differing = [name for name in SCORERS
                 if not _same(report.totals[name].as_dict(), in_memory.totals[name].as_dict())]
    reproduces = not mismatched and not differing and report.recordings == in_memory.recordings
    return {
        "one_hypothesis_per_reference": {
            "passed": one_each,
            "detail": (f"{len(pairs)} pairs for {len(scored)} scored recordings"
                       + (f"; paired by position with another name: {', '.join(unpaired[:5])}"
                          if unpaired else ""))},
        "durations_match_references": {
            "passed": not mismatched,
            "detail": "; ".join(mismatched[:5]) or f"all {len(pairs)} pairs equal"},
        "files_reproduce_scores": {
            "passed": reproduces,
            "detail": (f"scored {report.recordings} pairs from the lists; totals differ for: "
                       f"{', '.join(differing) or 'none'}")},
    }


def _same(a: dict, b: dict) -> bool:
    return all(math.isclose(a[k], b[k], rel_tol=1e-12, abs_tol=1e-9)
               or (math.isnan(a[k]) and math.isnan(b[k])) for k in a)


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def run_evaluation(request: EvaluationRequest, log: Callable[[str], None] = print) -> dict:
    """Evaluate, write ``out_dir`` (see the module docstring) and return the summary, which is
    also ``out_dir/scores.json``.

    Raises
    ------
    StaleInputError
        The pinned index or checkpoint is missing, changed or stale.
    ReferenceRecordError
        A cached recording has no recorded reference (rebuild the split's cache).
    """
    index = pinned_index(request.index, request.cache)
    checkpoint = _checked_checkpoint(request)
    dataset = EEGWindowDataset(request.cache_dir, index, config=request.cache, log=log)
    thresholds = set(SWEEP_THRESHOLDS) | ({request.threshold} if request.threshold is not None
                                          else set())
    log(f"[EVAL] {request.split}: {len(dataset)} windows of {len(dataset.recordings())} "
        f"recordings from {request.index.path} (version {request.index.version}), checkpoint "
        f"{request.checkpoint} (epoch {checkpoint['epoch']}), {len(thresholds)} thresholds")
    _metrics, accumulator = score_checkpoint(request.checkpoint, dataset, request.device,
                                             request.num_workers, request.cpu_threads,
                                             thresholds=thresholds)
    sweep = accumulator.sweep()
    if request.threshold is None:
        point = request.rule.choose(sweep)
        threshold, chosen_here = point.threshold, point.to_dict()
        log(f"[EVAL] threshold {threshold} chosen on {request.split}: {request.rule.describe()}"
            + ("" if point.target_met else " -- no threshold met the target; the one with the "
               "fewest false alarms was taken"))
    else:
        threshold, chosen_here = float(request.threshold), None
        log(f"[EVAL] threshold {threshold}, chosen on val, applied unchanged")
    out_dir = Path(request.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ref_list, hyp_list = _write_outputs(out_dir, accumulator, threshold)
    write_tsv_files(out_dir, accumulator, threshold)
    metrics = accumulator.metrics(threshold)
    checks = check_files(ref_list, hyp_list, accumulator, threshold, request.cache)
    checks.update(check_tsv_files(out_dir / REF_TSV_DIR, out_dir / HYP_TSV_DIR, accumulator,
                                  threshold, request.cache))
    non_finite = non_finite_figures(metrics)
    recordings = accumulator.recordings
    summary = {
        "split": request.split,
        "threshold": threshold,
        "threshold_rule": request.rule.describe(),
        "max_fa_per_24h": request.rule.max_fa_per_24h,
        "chosen_on_this_split": chosen_here,
        "model_version": request.model_version,
        "index_version": request.index.version,
        "checkpoint": str(request.checkpoint),
        "metrics": metrics,
        **{name: counts.as_dict() for name, counts in accumulator.totals(threshold).totals.items()},
        # SzCORE's benchmark's way: each patient's SzCORE figures, averaged over patients.
        "szcore_per_subject": accumulator.totals(threshold).per_subject(),
        "recordings_scored": len(recordings),
        "recordings_without_windows": sorted(r.bname for r in recordings if not r.has_windows),
        "excluded": [asdict(e) for e in accumulator.excluded],
        "sweep": sweep,
        "checks": {**checks, "scores_finite": {
            "passed": not non_finite, "detail": ", ".join(non_finite) or "all finite"}},
        "paths": {"ref_list": str(ref_list), "hyp_list": str(hyp_list),
                  "ref_dir": str(out_dir / REF_DIR), "hyp_dir": str(out_dir / HYP_DIR),
                  "ref_tsv_dir": str(out_dir / REF_TSV_DIR),
                  "hyp_tsv_dir": str(out_dir / HYP_TSV_DIR),
                  "scores": str(out_dir / SCORES_NAME)},
    }
    summary["data_version"] = evaluation_version(summary)
    summary = _json_safe(summary)
    write_bytes_atomic(out_dir / SCORES_NAME, json.dumps(summary, indent=2).encode())
    return summary


def evaluation_version(summary: dict) -> str:
    """A hash of what the scores depend on: model, index, threshold and rule."""
    parts = {k: summary[k] for k in ("split", "model_version", "index_version", "threshold",
                                     "max_fa_per_24h")}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


__all__ = ["EvaluationRequest", "HYP_LIST", "HYP_TSV_DIR", "REF_LIST", "REF_TSV_DIR", "SCORES_NAME",
           "check_files", "check_tsv_files", "evaluation_version", "run_evaluation",
           "write_tsv_files"]
