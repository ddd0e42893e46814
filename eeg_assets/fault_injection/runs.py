"""Running the platform on prepared inputs: ``build-cache`` in a subprocess, an uninterrupted
reference build in this process, the ``npz_windows`` asset in an ephemeral Dagster instance; the
corpus the process-level scenarios start from, and the result every scenario returns."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import eeg_assets
from eeg_assets.lib.cache.build import build_split
from eeg_assets.lib.dataset.index import collect_facts, update_index
from eeg_assets.lib.dataset.manifest import update_manifest
from eeg_assets.synthetic.edf_writer import Event, noise_generator, tusz_dir, write_recording
from eeg_assets.fault_injection.catalogue import TEMPLATE_FS

#: Subprocesses start in the folder that holds the ``eeg_assets`` package, so that
#: ``python -m eeg_assets`` imports the same code as this process (a checkout or an install).
PACKAGE_PARENT = Path(eeg_assets.__file__).resolve().parents[1]


def cli_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("BGB_")}


def build_cache_args(data_dir: Path, cache_dir: Path, workers: int = 1,
                     split: str = "train") -> list[str]:
    return ["build-cache", "--data-dir", str(data_dir), "--cache-dir", str(cache_dir),
            "--split", split, "--workers", str(workers), "--no-progress"]


def run_build_cache(data_dir: Path, cache_dir: Path, workers: int = 1, *,
                    timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "eeg_assets",
                           *build_cache_args(data_dir, cache_dir, workers)],
                          capture_output=True, text=True, env=cli_env(), cwd=PACKAGE_PARENT,
                          timeout=timeout)


def build_reference(data_dir: Path, cache_dir: Path) -> None:
    """An uninterrupted build (in this process) with its index and manifest."""
    build_split(data_dir, cache_dir, "train", workers=1, progress=None, log=lambda line: None)
    facts = collect_facts(cache_dir)
    update_index(cache_dir, facts=facts)
    update_manifest(cache_dir, facts=facts)


def live_group_members(pgid: int) -> list[int]:
    """Processes (not zombies) of a process group, from /proc."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            pids.append(int(name))
    return pids



def _table_rows(materialize_result, name: str) -> list[dict]:
    """The rows of npz_windows' metadata table ``name`` (absent when it had no rows)."""
    event = materialize_result.get_asset_materialization_events()[0]
    table = event.materialization.metadata.get(name)
    return [dict(record.data) for record in table.value.records] if table is not None else []


def metadata_rows_of(materialize_result) -> list[dict]:
    """The rows of the npz_windows ``not_built`` metadata table of a ``dg.materialize`` result."""
    return _table_rows(materialize_result, "not_built")


def warning_rows_of(materialize_result) -> list[dict]:
    """The rows of the npz_windows ``warnings`` metadata table of a ``dg.materialize`` result."""
    return _table_rows(materialize_result, "warnings")


def materialize_npz_windows(raw_root: Path, cache_root: Path, results_root: Path, *,
                            log_level: str = "INFO", raise_on_error: bool = True):
    """``npz_windows[train]`` materialized in process (an ephemeral Dagster instance)."""
    return materialize_chain(raw_root, cache_root, results_root, ["npz_windows"],
                             log_level=log_level, raise_on_error=raise_on_error)


#: The cache chain's assets, in order (``eeg_assets.orchestration.assets.build_cache_assets``).
CHAIN = ("npz_windows", "dataset_index", "manifest", "balanced_dataset")


def materialize_chain(raw_root: Path, cache_root: Path, results_root: Path,
                      keys: list[str] | tuple[str, ...] = CHAIN, *, log_level: str = "ERROR",
                      raise_on_error: bool = False, workers: int = 0):
    """The chain assets ``keys`` of partition ``train`` materialized in process (an ephemeral
    Dagster instance), as a run that selects only them: a step run alone when ``keys`` is one
    asset. Returns the ``dg.materialize`` result (which does not raise unless asked to)."""
    import dagster as dg  # imported here: the other helpers run without loading Dagster

    from eeg_assets.orchestration import build_resources
    from eeg_assets.orchestration.assets import build_cache_assets, raw_edf_recordings
    from eeg_assets.settings import Settings

    settings = Settings(raw_root=raw_root, cache_root=cache_root, results_root=results_root,
                        workers=workers)
    return dg.materialize([raw_edf_recordings, *build_cache_assets(settings)],
                          resources=build_resources(settings), partition_key="train",
                          selection=dg.AssetSelection.assets(*keys),
                          raise_on_error=raise_on_error,
                          run_config={"loggers": {"console": {"config": {"log_level": log_level}}}})


def step_failure_message(materialize_result) -> str:
    """What the failed steps of a ``dg.materialize`` result said ("" when none failed)."""
    messages = []
    for event in materialize_result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data
            description = data.user_failure_data.description if data.user_failure_data else ""
            messages.append((description or (data.error.message if data.error else "")).strip())
    return " | ".join(messages)


@dataclass
class ScenarioResult:
    name: str
    group: str
    inputs: int = 0               # inputs (bad files, kills, races, stale states) tried
    rejections_expected: int = 0  # of them, how many must be rejected with a reason
    rejected_as_expected: int = 0
    good_expected: int = 0
    good_built: int = 0
    files_lost: int = 0
    half_written: int = 0
    stale_expected: int = 0
    stale_undetected: int = 0
    problems: list[str] = field(default_factory=list)
    detail: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


def write_corpus(data_dir: Path, n: int = 6, duration_s: float = 150, *,
                 with_bad: bool = True) -> list[str]:
    """``n`` good recordings with different signals and seizures; with ``with_bad`` also one
    without annotation and one too short (so quarantine and too-short facts are compared too).
    Returns the sources expected to be built."""
    sources = []
    for i in range(n):
        stem = f"crash{i:03d}_s001_t000"
        files = write_recording(tusz_dir(data_dir, f"crash{i:03d}"), stem, fs=TEMPLATE_FS,
                                duration_s=duration_s, generator=noise_generator(seed=100 + i),
                                events=[Event(20.5 + 7 * i, 50.25 + 7 * i, "fnsz")],
                                extra_labels=["EEG EKG1-REF"], side_labels=["IBI"])
        sources.append(files.edf.relative_to(data_dir).as_posix())
    if with_bad:
        write_recording(tusz_dir(data_dir, "noann"), "noann_s001_t000", duration_s=70,
                        annotation=None)
        write_recording(tusz_dir(data_dir, "short"), "short_s001_t000", duration_s=40)
    return sources
