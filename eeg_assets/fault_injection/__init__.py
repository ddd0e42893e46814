"""Fault injection: bad inputs made from good files, and the crash, disk-full, concurrency and
staleness scenarios. A harness above every layer (it drives the CLI and the Dagster assets), kept
apart from :mod:`eeg_assets.synthetic`, which only makes data. Shared by
``eeg_assets_tests/e2e/test_fault_injection.py``, ``eeg_assets_tests/e2e/test_fault_scenarios.py``
and ``benchmarks/fault_injection.py``.

Every bad input is made at run time from a *good* recording (written with
:mod:`eeg_assets.synthetic.edf_writer`): the good EDF or annotation is copied, then truncated,
corrupted, relabelled or renamed. Each case is a function registered with a decorator that states
the outcome it must get (``quarantined``, ``built`` or ``ignored``) and the distinctive
substring(s) its reason must contain, so a test can fail for a vague or wrong reason and not only
for a missing one. A case is named after its function: the test id ``edf_zero_bytes`` is
``def edf_zero_bytes`` in :mod:`.edf_file_cases`; its files lie in the folder ``edf-zero-bytes``.

The whole catalogue is laid out into one split folder next to a few good recordings
(:func:`lay_out_catalogue`), so a single build shows that every bad file is explained while every
good file of the same split is still built. The scenario functions (``*_scenario``) each return a
:class:`ScenarioResult` with the counts the benchmark tabulates and a list of problems (empty
when the platform behaved).

Modules:

- ``catalogue``: the template recording, :class:`FaultCase`, the registering decorators
  (``edf_fault``, ``annotation_fault``, ``fault_case``), :func:`lay_out_catalogue`;
- ``edf_file_cases``, ``edf_signal_cases``, ``annotation_cases``, ``drop_cases``: the cases, by
  kind (imported here in this order, which is the catalogue's order);
- ``edf_surgery``: byte-level EDF header and text edits the cases use;
- ``checks``: how a case was handled (ledger, CLI summary, Dagster metadata) and what a cache
  folder was left holding;
- ``runs``: ``build-cache`` subprocesses, reference builds, the ``npz_windows`` asset;
- ``process_scenarios`` (SIGKILL, disk full on a first build and during a rebuild, concurrent
  builds) and ``cache_scenarios`` (drops after caching, stale manifests, a file still being
  copied);
- ``damage_scenarios`` (issue 21): a file moved away during a build, a lost or damaged ledger
  and ``adopt-cache``, steps run alone on edited or missing upstream files, NPZ bytes changed
  with size and mtime kept; :data:`NOT_PLAYED` says what is not played, and why.
"""

from eeg_assets.lib.cache.ledger import BUILT, FAILED, QUARANTINED
from eeg_assets.fault_injection import (  # noqa: F401 - importing them registers the cases
    edf_file_cases, edf_signal_cases, annotation_cases, drop_cases,
)
from eeg_assets.fault_injection.cache_scenarios import (
    drops_after_caching_scenario, settling_scenario, stale_manifest_scenario,
)
from eeg_assets.fault_injection.catalogue import (
    CATALOGUE, IGNORED, Catalogue, FaultCase, Template, lay_out_catalogue, write_template,
)
from eeg_assets.fault_injection.checks import (
    check_case, ledger_facts, staleness, temporary_files, untrustworthy_files,
)
from eeg_assets.fault_injection.damage_scenarios import (
    LEDGER_CASES, NOT_PLAYED, STEP_ALONE_CASES, ledger_scenario, moved_away_scenario,
    npz_damage_scenario, step_alone_scenarios,
)
from eeg_assets.fault_injection.process_scenarios import (
    concurrency_scenario, crash_scenario, disk_full_scenario, rebuild_disk_full_scenario,
)
from eeg_assets.fault_injection.runs import (
    ScenarioResult, build_reference, materialize_chain, materialize_npz_windows, metadata_rows_of,
    run_build_cache, step_failure_message, warning_rows_of, write_corpus,
)

__all__ = [
    "BUILT", "CATALOGUE", "FAILED", "IGNORED", "LEDGER_CASES", "NOT_PLAYED", "QUARANTINED",
    "STEP_ALONE_CASES", "Catalogue", "FaultCase", "ScenarioResult", "Template", "build_reference",
    "check_case", "concurrency_scenario", "crash_scenario", "disk_full_scenario",
    "drops_after_caching_scenario", "lay_out_catalogue", "ledger_facts", "ledger_scenario",
    "materialize_chain", "materialize_npz_windows", "metadata_rows_of", "moved_away_scenario",
    "npz_damage_scenario", "rebuild_disk_full_scenario", "run_build_cache", "settling_scenario",
    "stale_manifest_scenario", "staleness", "step_alone_scenarios", "step_failure_message",
    "temporary_files", "untrustworthy_files", "warning_rows_of", "write_corpus",
    "write_template",
]
