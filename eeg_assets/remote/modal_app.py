"""The Modal app that trains and evaluates on GPUs: ``modal run eeg_assets/remote/modal_app.py``.

The Dagster ``modal`` launcher runs exactly that command (with ``--job evaluate`` for
``model_evaluation``) with the Pipes context in the environment. The local entrypoint forwards the
Pipes variables to a GPU function, ``train`` or ``evaluate``, which runs the same
:mod:`eeg_assets.remote.train_entry` or :mod:`eeg_assets.remote.evaluate_entry` as the local
launcher, on a persistent Volume mounted at ``/results`` (cache at
``/results/cache/tusz/{train,val,eval}``, results under ``/results/``). Pipes messages come back on
stdout, which ``modal run`` streams to the launcher.

Credentials come only from the environment (``MODAL_TOKEN_ID``/``MODAL_TOKEN_SECRET`` or
``modal token new``); nothing here reads or logs them. The container sees none of the local
environment except what the entrypoint forwards: the Pipes variables and the seed's ``BGB_*`` flags
(``BGB_SMOKE_TEST``, ``BGB_LIMIT_FILES``, ``BGB_FORCE_MANIFEST_REBUILD``), which the training run
reads where it runs. Settings, read when the app is imported (:class:`eeg_assets.settings.ModalSettings`):
``EEG_ASSETS_MODAL_GPU`` (default ``A100``), ``EEG_ASSETS_MODAL_VOLUME`` (``eeg-assets-results``),
``EEG_ASSETS_MODAL_TIMEOUT_S`` (``21600``), ``EEG_ASSETS_MODAL_CPU`` (``8``: data loading
stalled at Modal's default 0.125 CPU) and ``EEG_ASSETS_MODAL_MEMORY_MB`` (``32768``).
"""

import os
import sys

import modal

from eeg_assets.settings import ModalSettings

RESULTS_MOUNT = "/results"
CACHE_ROOT = f"{RESULTS_MOUNT}/cache/tusz"
PIPES_ENV_PREFIX = "DAGSTER_PIPES_"
#: Local environment variables handed to the GPU function (a container inherits none of them).
FORWARDED_ENV_PREFIXES = (PIPES_ENV_PREFIX, "BGB_")

SETTINGS = ModalSettings.from_env()

image = (
    modal.Image.debian_slim(python_version="3.11")
    .pip_install("torch==2.13.0", "numpy", "scipy", "pyedflib", "matplotlib", "threadpoolctl",
                 "timescoring==0.0.7", "dagster-pipes==1.13.27")
    .add_local_python_source("eeg_assets")
)
volume = modal.Volume.from_name(SETTINGS.volume, create_if_missing=True)
app = modal.App("eeg-assets-train", image=image)
GPU_FUNCTION = dict(gpu=SETTINGS.gpu, volumes={RESULTS_MOUNT: volume}, timeout=SETTINGS.timeout_s,
                    cpu=SETTINGS.cpu, memory=SETTINGS.memory_mb)


def _run_entry(forwarded_env: dict[str, str], main) -> None:
    os.environ.update(forwarded_env)
    # Pipes messages are lines on stdout; dagster_pipes never flushes, and a block-buffered
    # stdout would hold logs and epochs back until 8 KiB piled up or the run ended.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    try:
        main()
    finally:
        volume.commit()  # checkpoints, metrics and hypotheses persist even when a run fails


@app.function(**GPU_FUNCTION)
def train(forwarded_env: dict[str, str]) -> None:
    from eeg_assets.remote import train_entry

    _run_entry(forwarded_env, lambda: train_entry.main())


@app.function(**GPU_FUNCTION)
def evaluate(forwarded_env: dict[str, str]) -> None:
    from eeg_assets.remote import evaluate_entry

    _run_entry(forwarded_env, lambda: evaluate_entry.main())


@app.local_entrypoint()
def run(job: str = "train") -> None:
    """``modal run modal_app.py [--job train|evaluate]``."""
    functions = {"train": train, "evaluate": evaluate}
    if job not in functions:
        raise SystemExit(f"unknown job {job!r}: use train or evaluate")
    forwarded = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIXES)}
    functions[job].remote(forwarded)
