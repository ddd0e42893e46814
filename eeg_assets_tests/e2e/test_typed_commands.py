"""The commands as a person types them after ``make setup`` and ``source .venv/bin/activate``, in
the repository root: ``dagster asset materialize --select ... --partition train`` (no ``-m``),
``dg launch``, ``dg check defs`` and ``dg dev``.

Each runs in ``bash -c`` after sourcing this virtual environment's ``bin/activate``, so what
``make setup`` adds to the activation (the module of the ``dagster`` commands, DAGSTER_HOME) is
under test too; the ``EEG_ASSETS_*`` roots and DAGSTER_HOME point at temporary folders.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import dagster as dg
import pytest

from eeg_assets_tests.support.dagster_fixtures import BIN, CHAIN, CHECKS, dagster_env, make_dagster_home, open_instance
from eeg_assets_tests.support.dagster_fixtures import sample_raw_root  # noqa: F401  (a fixture)
from eeg_assets_tests.support.webserver import HOST, free_port, wait_until_up

REPO_ROOT = Path(__file__).resolve().parents[2]
ACTIVATE = BIN / "activate"
#: Two patients of the sample corpus's train split, each with a seizure (a small, valid split).
TRAIN_PATIENTS = ("aaaaaeyr", "aaaaahpc")
TYPED_MODULE_VARIABLES = ("DAGSTER_CLI_ASSET_MATERIALIZE_MODULE_NAME",
                          "DAGSTER_CLI_ASSET_LIST_MODULE_NAME",
                          "DAGSTER_CLI_JOB_EXECUTE_MODULE_NAME")


def _in_activated_shell(command: str) -> list[str]:
    if "eeg_assets_env.sh" not in ACTIVATE.read_text():
        pytest.fail(f"{ACTIVATE} was not written by `make setup` (run it: the activation is what "
                    "these tests check)")
    return ["bash", "-c", f"source {shlex.quote(str(ACTIVATE))} && {command}"]


def typed(command: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    """``command`` typed in an activated shell in the repository root."""
    return subprocess.run(_in_activated_shell(command), env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout)


def _without_dagster(env: dict[str, str] | None = None) -> dict[str, str]:
    return {k: v for k, v in (env or os.environ).items() if not k.startswith("DAGSTER_")}


def test_activation_sets_the_module_and_the_makefiles_dagster_home():
    env = _without_dagster()
    show = 'printf "%s|" "${DAGSTER_HOME-unset}" ' + " ".join(
        f'"${{{name}-unset}}"' for name in TYPED_MODULE_VARIABLES)
    done = typed(f'{show}; deactivate; {show}', env, timeout=60)
    assert done.returncode == 0, done.stderr
    make = subprocess.run(["make", "-s", "--no-print-directory",
                           "--eval", 'print-dagster-home: ; @echo "$$DAGSTER_HOME"',
                           "print-dagster-home"],
                          env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert make.returncode == 0, make.stderr
    makefile_home = make.stdout.strip()
    assert makefile_home == str(REPO_ROOT / ".dagster_home")  # what `make ui` and `make sample` use
    n = len(TYPED_MODULE_VARIABLES)
    assert done.stdout == "|".join([makefile_home, *["eeg_assets"] * n, "unset", *["unset"] * n,
                                    ""])

    # a DAGSTER_HOME the caller set wins, as in the Makefile, and deactivate leaves it alone
    done = typed(f'{show}; deactivate; {show}', {**env, "DAGSTER_HOME": "/srv/dagster"},
                 timeout=60)
    assert done.stdout.split("|")[0] == "/srv/dagster"
    assert done.stdout.split("|")[n + 1] == "/srv/dagster"


@pytest.mark.slow
def test_typed_dagster_and_dg_launch_build_and_record_the_train_manifest(sample_raw_root,
                                                                         tmp_path):
    raw, cache = tmp_path / "raw", tmp_path / "cache"
    for patient in TRAIN_PATIENTS:
        shutil.copytree(sample_raw_root / "train" / patient, raw / "train" / patient)
    home = make_dagster_home(tmp_path / "dagster_home")
    env = dagster_env(home, raw, cache, tmp_path / "results")
    manifest_alone = "dagster asset materialize --select manifest --partition train"

    # before the cache exists, the manifest alone fails and names the missing folder
    first = typed(manifest_alone, env)
    output = first.stdout + first.stderr
    assert first.returncode != 0
    assert "Invalid set of CLI arguments" not in output  # the module came from the activation
    assert f"cache folder {cache / 'train'} does not exist" in output, output[-4000:]

    launched = typed("dg launch --assets npz_windows,dataset_index,manifest --partition train", env)
    assert launched.returncode == 0, (launched.stdout + launched.stderr)[-6000:]
    assert sorted(p.name for p in (cache / "train").glob("*_windows.npz")) == [
        "aaaaaeyr_s003_t000_windows.npz", "aaaaahpc_s002_t000_windows.npz"]
    assert (cache / "train" / "manifest.json").is_file()

    again = typed(manifest_alone, env)
    assert again.returncode == 0, (again.stdout + again.stderr)[-6000:]
    # results at INFO for a person; Dagster's DEBUG event lines stay in the event log
    assert " - DEBUG - " not in again.stdout + again.stderr
    assert "STEP_START" not in again.stdout + again.stderr

    with open_instance(home) as instance:
        runs = instance.get_runs()[::-1]  # oldest first: the three commands above, in order
        assert [run.tags["dagster/partition"] for run in runs] == ["train"] * 3
        assert [run.status for run in runs] == [dg.DagsterRunStatus.FAILURE,
                                                dg.DagsterRunStatus.SUCCESS,
                                                dg.DagsterRunStatus.SUCCESS]
        manifests = instance.fetch_materializations(dg.AssetKey("manifest"), limit=10).records
        assert [m.partition_key for m in manifests] == ["train", "train"]
        evaluations = {}
        for run in runs:
            for entry in instance.all_logs(run.run_id,
                                           of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
                evaluation = entry.get_dagster_event().event_specific_data
                evaluations.setdefault(evaluation.asset_check_key.name, []).append(evaluation)
        expected = CHECKS["npz_windows"] | CHECKS["dataset_index"] | CHECKS["manifest"]
        assert set(evaluations) == expected
        assert all(e.passed for found in evaluations.values() for e in found), evaluations
        assert all(len(evaluations[name]) == 2 for name in CHECKS["manifest"])


@pytest.mark.slow
def test_dg_check_defs_loads_the_definitions(tmp_path):
    home = make_dagster_home(tmp_path / "dagster_home")
    env = dagster_env(home, tmp_path / "raw", tmp_path / "cache", tmp_path / "results")
    done = typed("dg check defs", env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    assert "All definitions loaded successfully" in done.stdout + done.stderr
    # it loads them for real: a configuration the definitions reject fails the check
    broken = typed("dg check defs", {**env, "EEG_ASSETS_NOTCH_HZ": "sixty"})
    assert broken.returncode != 0
    assert "All definitions loaded successfully" not in broken.stdout + broken.stderr


@pytest.mark.slow
def test_dg_dev_serves_the_project(tmp_path):
    home = make_dagster_home(tmp_path / "dagster_home")
    env = dagster_env(home, tmp_path / "raw", tmp_path / "cache", tmp_path / "results")
    port = free_port()
    log_path = tmp_path / "dg_dev.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(_in_activated_shell(f"exec dg dev -h {HOST} -p {port}"),
                                   env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        answer = wait_until_up(process, f"http://{HOST}:{port}/graphql", log_path)
        assert "errors" not in answer, answer["errors"]
        assert {*CHAIN, "trained_model"} <= {"/".join(n["assetKey"]["path"])
                                             for n in answer["data"]["assetNodes"]}
        (repo,) = answer["data"]["repositoriesOrError"]["nodes"]
        assert repo["location"]["name"] == "eeg_assets"  # the name `make ui` shows
    finally:
        # One SIGTERM, as a user presses Ctrl-C once. dagster dev maps it to an interrupt, asks
        # its webserver and daemon to stop, and waits up to _SUBPROCESS_WAIT_TIMEOUT (60 s) for
        # each before killing it; a second signal would cut that wait short and orphan the
        # daemon. So the bound here is Dagster's own: two waits and a margin for a loaded machine.
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=2 * 60 + 30)
        except subprocess.TimeoutExpired:
            pass
    # the webserver, daemon and code servers it started stop with it (they share its session)
    deadline = time.monotonic() + 30
    while _group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    if _group_alive(process.pid):
        left = _group_processes(process.pid)
        os.killpg(process.pid, signal.SIGKILL)  # our own session: only what we started
        process.wait()
        pytest.fail(f"dg dev (exit status {process.returncode}) left processes running after "
                    f"one SIGTERM:\n{left}\n{log_path.read_text()[-4000:]}")
    assert "Traceback" not in log_path.read_text(), log_path.read_text()[-6000:]


def _group_processes(group: int) -> str:
    listing = subprocess.run(["ps", "-o", "pid,pgid,etime,args", "-s", str(group)],
                             capture_output=True, text=True)
    return listing.stdout or listing.stderr


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True
