"""``python -m eeg_assets modal-check``, as a new user runs it before a first Modal run.

Modal's servers are the stand-in's (``stand_in_modal.py``, through ``EEG_ASSETS_MODAL_CLIENT``):
the ping is a real call of each deployed app's ``ping`` function in a "container" process.
"""

from __future__ import annotations

import os
from pathlib import Path

from eeg_assets.remote.modal_check import estimate
from eeg_assets.settings import ModalSettings, Settings

REPO = Path(__file__).resolve().parents[2]


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])), "EEG_ASSETS_MODAL_CLIENT": "eeg_assets_tests.support.stand_in_modal:StandInModal",
            "EEG_ASSETS_STAND_IN_RAW_VOLUME": str(tmp_path / "raw"),
            "EEG_ASSETS_STAND_IN_VOLUME": str(tmp_path / "results"),
            "EEG_ASSETS_STAND_IN_SERVER": str(tmp_path / "server"),
            "EEG_ASSETS_STAND_IN_NO_TOKEN": "", "EEG_ASSETS_STAND_IN_DEPLOYED_VERSION": "",
            **extra}


def test_a_ready_setup_passes_every_check_and_gets_an_estimate(run_cli, tmp_path):
    done = run_cli("modal-check", env=env_for(tmp_path), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "[ok] Modal token (stand-in)"
    assert "[ok] raw volume eeg-assets-raw: version 2" in lines
    assert "[ok] results volume eeg-assets-results: version 2" in lines
    for app in ("eeg-assets-train", "eeg-assets-cache"):
        assert any(line.startswith(f"[ok] app {app}: deployed code ") and "round trip" in line
                   for line in lines), lines
    assert any("spawned calls x 5 s start-up" in line for line in lines), lines
    assert lines[-1] == "ready for a first run"


def test_each_problem_is_named_with_its_fix(run_cli, tmp_path):
    stale = run_cli("modal-check", env=env_for(
        tmp_path, EEG_ASSETS_STAND_IN_DEPLOYED_VERSION="0123456789abcdef"), timeout=300)
    assert stale.returncode == 1
    assert "[FIX] app eeg-assets-train: deployed code 0123456789abcdef" in stale.stdout
    assert "run `modal deploy eeg_assets/remote/modal_app.py`" in stale.stdout
    assert stale.stdout.splitlines()[-1] == "2 thing(s) to fix first"

    no_token = run_cli("modal-check", env=env_for(tmp_path, EEG_ASSETS_STAND_IN_NO_TOKEN="1"))
    assert no_token.returncode == 1
    assert no_token.stdout.splitlines()[0] == (
        "[FIX] Modal token (none found): run `modal token new`, or set MODAL_TOKEN_ID and "
        "MODAL_TOKEN_SECRET")


def test_the_estimate_counts_the_start_up_of_every_call_and_scales_with_the_settings():
    base = estimate(Settings())
    wider = estimate(Settings(modal=ModalSettings(build_max_containers=64)))
    assert base.build_wall_s > 3 * 11 * 5  # at least the start-ups of 33 calls
    assert wider.build_usd > base.build_usd  # more containers wait on the volume, billed
    h100 = estimate(Settings(modal=ModalSettings(gpu="H100")))
    assert h100.train_usd > base.train_usd > 0
