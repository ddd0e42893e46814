"""Fault injection (issue 6): every bad input is explained, every good one is still built, and no
file is left that a later step would wrongly trust.

The catalogue of bad inputs lives in :mod:`eeg_assets.fault_injection`, one named function per
case (the test id); each is made at test time from a good recording written with
:mod:`eeg_assets.synthetic.edf_writer` (truncated, corrupted, relabelled, renamed, ...). All
are laid out in ONE split next to good recordings, built once by ``build-cache`` (2 workers) and
once by the ``npz_windows`` asset, and each case is then checked in the CLI summary, the ledger
and the Dagster metadata table. The crash, disk-full and concurrency scenarios run real
``build-cache`` processes.
"""

from __future__ import annotations

import pytest

from eeg_assets import fault_injection as faults
from eeg_assets.fault_injection import BUILT, CATALOGUE, IGNORED, QUARANTINED


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def template(workspace):
    return faults.write_template(workspace / "template")


@pytest.fixture(scope="module")
def catalogue(workspace, template):
    return faults.lay_out_catalogue(workspace / "raw" / "train", workspace / "outside", template)


@pytest.fixture(scope="module")
def cli_build(workspace, catalogue):
    """``build-cache`` over the whole catalogue split: (cache folder, completed process)."""
    cache = workspace / "cache_cli" / "train"
    proc = faults.run_build_cache(catalogue.split_dir, cache, workers=2)
    return cache, proc


@pytest.fixture(scope="module")
def reference(cli_build):
    """(n_windows, seizure samples per window) of an untouched copy of the template."""
    cache, _ = cli_build
    facts = faults.ledger_facts(cache)
    status, n_windows, seizure_samples, _, reason = facts[
        "good-00/s001_2015/01_tcp_ar/good-00_s001_t000.edf"]
    assert status == BUILT, reason
    return n_windows, seizure_samples


def test_the_template_gives_the_labels_its_annotation_says(reference):
    # 80 s -> 3 windows (0-60, 10-70, 20-80 s); the seizure 20.5-45.25 s lies inside each one:
    # [floor(20.5 * 256), floor(45.25 * 256)) = 6336 samples.
    assert reference == (3, [6336, 6336, 6336])


@pytest.mark.parametrize("case", CATALOGUE, ids=str)
def test_fault_case_in_ledger_and_cli_summary(case, catalogue, cli_build, reference):
    cache, proc = cli_build
    assert proc.returncode == 0, proc.stderr
    problems = faults.check_case(case, catalogue.source_of(case.name), cache,
                                 cli_output=proc.stdout, reference=tuple(reference))
    assert problems == [], f"{case.name} ({case.description})"


def test_every_good_recording_of_the_split_is_built(catalogue, cli_build):
    cache, proc = cli_build
    facts = faults.ledger_facts(cache)
    built = sorted(s for s, f in facts.items() if f[0] == BUILT)
    assert built == catalogue.expected_built
    assert sorted(p.name for p in cache.glob("*_windows.npz")) == sorted(
        facts[s][3] for s in built)
    rejected = [c for c, _ in catalogue.cases if c.outcome == QUARANTINED]
    assert sum(f[0] == QUARANTINED for f in facts.values()) == len(rejected)
    assert f"quarantined {len(rejected)} |" in proc.stdout
    assert sum(c.outcome == IGNORED for c, _ in catalogue.cases) == sum(
        line.startswith("  ignored: ") for line in proc.stdout.splitlines())
    assert faults.temporary_files(cache) == []
    assert faults.untrustworthy_files(cache) == []
    assert faults.staleness(cache) == (None, None)


def test_dagster_metadata_explains_every_rejected_input(workspace, catalogue, reference):
    result = faults.materialize_npz_windows(workspace / "raw", workspace / "cache_dagster",
                                            workspace / "results")
    assert result.success
    rows = faults.metadata_rows_of(result)
    warning_rows = faults.warning_rows_of(result)
    cache = workspace / "cache_dagster" / "train"
    problems = {case.name: faults.check_case(case, source, cache, metadata_rows=rows,
                                             reference=tuple(reference), warning_rows=warning_rows)
                for case, source in catalogue.cases}
    assert {name: p for name, p in problems.items() if p} == {}
    facts = faults.ledger_facts(cache)
    assert sorted(s for s, f in facts.items() if f[0] == BUILT) == catalogue.expected_built
    assert len(rows) == sum(c.outcome == QUARANTINED for c, _ in catalogue.cases)


def test_file_still_being_copied_waits_for_a_later_sensor_tick(tmp_path, template):
    result = faults.settling_scenario(tmp_path, template)
    assert result.problems == [], result.detail


def test_recordings_deleted_or_damaged_after_caching(tmp_path, template):
    result = faults.drops_after_caching_scenario(tmp_path, template)
    assert result.problems == [], result.detail
    assert result.rejected_as_expected == result.rejections_expected == 4
    assert result.good_built == result.good_expected == 2


def test_stale_manifest_is_always_detected(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    faults.write_corpus(data, n=3, duration_s=80, with_bad=False)
    faults.build_reference(data, cache)
    result = faults.stale_manifest_scenario(tmp_path, cache)
    assert result.problems == [], result.detail
    assert result.stale_undetected == 0


# ------------------------------------------------------------------------------------------------
# Crashes, a full disk, concurrent builds (real build-cache processes)
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def crash_corpus(workspace):
    """Six good recordings (150 s) plus one without annotation and one too short, and the cache
    of an uninterrupted build of them."""
    data, reference_cache = workspace / "crash_data", workspace / "crash_reference"
    faults.write_corpus(data)
    faults.build_reference(data, reference_cache)
    return data, reference_cache


@pytest.mark.slow
@pytest.mark.parametrize("trigger, seed", [("progress", 1), ("mid-write", 0), ("time", 3)])
def test_killed_build_then_rerun_equals_an_uninterrupted_build(trigger, seed, tmp_path,
                                                               crash_corpus):
    data, reference_cache = crash_corpus
    result = faults.crash_scenario(tmp_path, data, reference_cache, seed=seed, trigger=trigger)
    assert result.problems == [], result.detail
    assert result.files_lost == result.half_written == 0


@pytest.mark.slow
def test_killed_pool_build_leaves_no_worker_behind(tmp_path, crash_corpus):
    data, reference_cache = crash_corpus
    result = faults.crash_scenario(tmp_path, data, reference_cache, seed=0, workers=2,
                                   trigger="mid-write")
    assert result.problems == [], result.detail


@pytest.mark.slow
def test_full_disk_fails_the_write_cleanly_and_a_rerun_builds_it(tmp_path):
    result = faults.disk_full_scenario(tmp_path)
    assert result.problems == [], result.detail
    assert result.rejected_as_expected == 1 and result.good_built == 2


@pytest.mark.slow
@pytest.mark.parametrize("how", ["cli", "library"])
def test_two_concurrent_builds_equal_one(how, tmp_path, crash_corpus):
    data, reference_cache = crash_corpus
    # The library variant races the index/manifest writers of one run against the leftover
    # cleanup of the other; three rounds catch a regression most of the time.
    result = faults.concurrency_scenario(tmp_path, data, reference_cache, how=how,
                                         rounds=1 if how == "cli" else 3)
    assert result.problems == [], result.detail
