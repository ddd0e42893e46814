"""Shared fixtures: the real TUSZ files in ``data/`` (see its README) and a runner for the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _find_shared_data() -> Path | None:
    candidates = [os.environ.get("EEG_ASSETS_SHARED_DATA", ""), Path(__file__).parent / "data"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "tusz_csv_bi").is_dir():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real TUSZ files (``tusz_csv_bi/``, ``nedc_sample/``, ``tusz_headers/``), in
    the repository; a missing folder fails the test instead of skipping it
    (EEG_ASSETS_SHARED_DATA points elsewhere)."""
    found = _find_shared_data()
    if found is None:
        pytest.fail("real TUSZ test data not found: expected eeg_assets_tests/data (in the "
                    "repository) or EEG_ASSETS_SHARED_DATA")
    return found


@pytest.fixture
def run_cli():
    """Run ``python -m eeg_assets <args>`` in a subprocess; returns the CompletedProcess.

    ``env`` entries are added to a copy of the environment with the BGB_* flags removed, so the
    caller's shell cannot change what a test sees.
    """

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120):
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("BGB_")}
        full_env.update(env or {})
        return subprocess.run([sys.executable, "-m", "eeg_assets", *map(str, args)],
                              capture_output=True, text=True, env=full_env, timeout=timeout,
                              cwd=REPO_ROOT)

    return run
