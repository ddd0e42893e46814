"""Shared fixtures: the real TUSZ files in ``data/`` (see its README) and a runner for the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


#: Real TUSZ files written by other people (origin and licence in its README).
REAL_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The folder of real TUSZ files in the repository (``tusz_csv_bi/``, ``nedc_sample/``,
    ``tusz_headers/``); a missing folder fails the test instead of skipping it."""
    if not (REAL_DATA / "tusz_csv_bi").is_dir():
        pytest.fail(f"real TUSZ test data not found in {REAL_DATA} (it is part of the "
                    "repository: is the checkout complete?)")
    return REAL_DATA


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
