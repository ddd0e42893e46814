"""The fault-injection cases and scenarios added for issue 21, run one by one (the whole table is
``benchmarks/fault_injection.py``; the rest of the catalogue is ``test_fault_injection.py``).

* catalogue cases: an extra annotation column (built), a missing ``start_time`` column
  (quarantined naming it), a ``.csv_bi`` and ``.csv`` that disagree on seizures (built with a
  warning naming both), an EDF symlink to another EDF of the split (ignored, built once);
* scenarios: an EDF or annotation moved away during a build and back (retried), a full disk
  during a rebuild (the previous NPZ kept, by build-cache and by the npz_windows step), the
  ledger truncated to 0 bytes, deleted or damaged (nothing deleted, adopt-cache takes the NPZs
  back), a step run alone on an edited manifest or a deleted index (refused), NPZ bytes changed
  with size and mtime kept (verify-cache --all and scan-cache).

Each scenario returns a :class:`~eeg_assets.fault_injection.ScenarioResult`; it passed when its
``problems`` list is empty (``detail`` says what happened).
"""

from __future__ import annotations

import pytest

from eeg_assets import fault_injection as faults
from eeg_assets.fault_injection import BUILT, CATALOGUE, IGNORED, QUARANTINED
from eeg_assets.fault_injection.checks import cli_line

NEW_CASES = ("ann_missing_start_time", "ann_extra_column", "ann_csv_bi_has_seizure",
             "ann_csv_has_seizure", "drop_symlink_inside")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return tmp_path_factory.mktemp("fault_scenarios")


@pytest.fixture(scope="module")
def template(workspace):
    return faults.write_template(workspace / "template")


@pytest.fixture(scope="module")
def small_corpus(workspace):
    """Three good 80 s recordings and the cache of an uninterrupted build (index, manifest)."""
    data, cache = workspace / "small_data", workspace / "small_cache"
    faults.write_corpus(data, n=3, duration_s=80, with_bad=False)
    faults.build_reference(data, cache)
    return data, cache


@pytest.fixture(scope="module")
def long_corpus(workspace):
    """Six good 150 s recordings (windows with and without seizure) plus one without annotation
    and one too short, and the cache of an uninterrupted build."""
    data, cache = workspace / "long_data", workspace / "long_cache"
    faults.write_corpus(data)
    faults.build_reference(data, cache)
    return data, cache


# ------------------------------------------------------------------------------------------------
# Catalogue cases
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def new_cases_build(workspace, template):
    cases = [case for case in CATALOGUE if case.name in NEW_CASES]
    catalogue = faults.lay_out_catalogue(workspace / "raw" / "train", workspace / "outside",
                                         template, n_good=1, cases=cases)
    cache = workspace / "cache" / "train"
    return catalogue, cache, faults.run_build_cache(catalogue.split_dir, cache)


def test_the_new_cases_are_registered():
    assert sorted(c.name for c in CATALOGUE if c.name in NEW_CASES) == sorted(NEW_CASES)


@pytest.mark.parametrize("name", NEW_CASES)
def test_new_catalogue_case(name, new_cases_build):
    catalogue, cache, proc = new_cases_build
    assert proc.returncode == 0, proc.stderr
    case = next(c for c in CATALOGUE if c.name == name)
    reference = faults.ledger_facts(cache)[catalogue.good_sources[0]]
    assert reference[0] == BUILT
    problems = faults.check_case(case, catalogue.source_of(name), cache, cli_output=proc.stdout,
                                 reference=(reference[1], reference[2]))
    assert problems == [], case.description


def test_new_cases_build_every_good_recording_once(new_cases_build):
    catalogue, cache, proc = new_cases_build
    facts = faults.ledger_facts(cache)
    assert sorted(s for s, f in facts.items() if f[0] == BUILT) == catalogue.expected_built
    # the symlinked recording is built once: one NPZ per built entry, none for the link
    assert sorted(p.name for p in cache.glob("*_windows.npz")) == sorted(
        facts[s][3] for s in catalogue.expected_built)
    assert sum(f[0] == QUARANTINED for f in facts.values()) == sum(
        c.outcome == QUARANTINED for c, _ in catalogue.cases)
    link = catalogue.source_of("drop_symlink_inside")
    assert cli_line(proc.stdout, "ignored", link) and link not in facts
    assert sum(c.outcome == IGNORED for c, _ in catalogue.cases) == 1
    assert faults.temporary_files(cache) == [] and faults.untrustworthy_files(cache) == []


# ------------------------------------------------------------------------------------------------
# Scenarios
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("what", ["edf", "annotation"])
def test_a_file_moved_away_during_a_build_is_retried_and_built_next_run(what, tmp_path,
                                                                        template):
    result = faults.moved_away_scenario(tmp_path, template, what)
    assert result.problems == [], result.detail
    assert result.rejected_as_expected == 1 and result.good_built == 2


@pytest.mark.parametrize("how", list(faults.LEDGER_CASES))
def test_ledger_damage_deletes_nothing_and_adopt_cache_takes_the_npzs_back(how, tmp_path,
                                                                           small_corpus):
    data, cache = small_corpus
    result = faults.ledger_scenario(tmp_path, data, cache, how)
    assert result.problems == [], result.detail
    assert result.rejected_as_expected == 1 and result.files_lost == 0
    assert result.good_built == result.good_expected == 3


def test_npz_damage_with_size_and_mtime_kept_is_found(tmp_path, long_corpus):
    _, cache = long_corpus
    result = faults.npz_damage_scenario(tmp_path, cache)
    assert result.problems == [], result.detail
    assert result.rejected_as_expected == result.rejections_expected == 3


@pytest.mark.slow
def test_a_full_disk_during_a_rebuild_keeps_the_previous_npz(tmp_path):
    result = faults.rebuild_disk_full_scenario(tmp_path)
    assert result.problems == [], result.detail
    assert result.rejected_as_expected == 2 and result.good_built == 2


@pytest.mark.slow
def test_a_step_run_alone_refuses_an_edited_or_missing_upstream_file(tmp_path, long_corpus):
    data, cache = long_corpus
    results = faults.step_alone_scenarios(tmp_path, data, cache)
    assert len(results) == len(faults.STEP_ALONE_CASES)
    for result in results:
        assert result.problems == [], (result.name, result.detail)
        assert result.rejected_as_expected == 1 and result.stale_undetected == 0
