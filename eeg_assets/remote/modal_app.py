"""The Modal app that trains and evaluates on GPUs, deployed once:
``modal deploy eeg_assets/remote/modal_app.py``.

``trained_model`` and ``model_evaluation`` with the ``modal`` backend spawn ``train`` or
``evaluate`` of the deployed app by name and record the call's id in the Dagster run, so a job
outlives the process that started it (a laptop asleep, a restarted daemon) and a retried step
re-attaches to the running call instead of paying for a second one. Both run the same
:mod:`eeg_assets.remote.train_entry` or :mod:`eeg_assets.remote.evaluate_entry` as the local
launcher, on a version-2 Volume mounted at ``/results`` (cache at ``/results/cache/tusz/{train,val,
eval}``, results under ``/results/``). Their Pipes messages come back as the function's return
value, their log lines also on a Queue while they run (:mod:`eeg_assets.remote.pipes_channel`).

Preemption: Modal may stop a container and run the same input again. Training commits its
checkpoint to the volume after every epoch and a restarted call resumes from it (the history
Dagster records has each epoch once); an evaluation rewrites its outputs whole, so running it
twice gives the same files.

Credentials come only from the Dagster process's environment or ``~/.modal.toml``; the container
sees none of it. What the container sees of this machine: the Pipes variables and the
upstream scripts' ``BGB_*`` flags (``BGB_SMOKE_TEST``, ``BGB_LIMIT_FILES``,
``BGB_FORCE_MANIFEST_REBUILD``), both passed in the call. Settings, read when the app is deployed
and baked into the image (:class:`eeg_assets.settings.ModalSettings`): ``EEG_ASSETS_MODAL_GPU``
(default ``A100``), ``EEG_ASSETS_MODAL_VOLUME`` (``eeg-assets-results``),
``EEG_ASSETS_MODAL_TIMEOUT_S`` (``21600``), ``EEG_ASSETS_MODAL_CPU`` (``8``: data loading stalled
at Modal's default 0.125 CPU) and ``EEG_ASSETS_MODAL_MEMORY_MB`` (``32768``).
"""

import os
import sys
from importlib.metadata import version

import modal

from eeg_assets.remote.deployment import PIPES_QUEUE, TRAIN_APP, code_version
from eeg_assets.remote.volume_layout import RESULTS_MOUNT
from eeg_assets.settings import ModalSettings

#: The packages the training container imports, at this machine's versions.
PINNED_TO_HOST = ("numpy", "scipy", "pyedflib", "matplotlib", "threadpoolctl", "timescoring",
                  "dagster-pipes")
PYTHON_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
#: Upstream flags read where training runs; passed in the call (a container inherits nothing).
FORWARDED_ENV_PREFIXES = ("BGB_",)

SETTINGS = ModalSettings.from_env()
CODE_VERSION = code_version(SETTINGS.to_env())

image = (
    modal.Image.debian_slim(python_version=PYTHON_VERSION)
    # PyPI's torch for Linux is the CUDA build the GPU needs.
    .pip_install(f"torch=={version('torch').split('+')[0]}",
                 *(f"{name}=={version(name)}" for name in PINNED_TO_HOST))
    .env(SETTINGS.to_env())
    .add_local_python_source("eeg_assets")
)
volume = modal.Volume.from_name(SETTINGS.volume, create_if_missing=True, version=2)
pipes_queue = modal.Queue.from_name(PIPES_QUEUE, create_if_missing=True)
app = modal.App(TRAIN_APP, image=image)
GPU_FUNCTION = dict(gpu=SETTINGS.gpu, volumes={RESULTS_MOUNT: volume}, timeout=SETTINGS.timeout_s,
                    cpu=SETTINGS.cpu, memory=SETTINGS.memory_mb)


def _serve(call: dict, main) -> dict:
    from eeg_assets.remote.pipes_channel import serve

    for name in [k for k in os.environ if k.startswith(FORWARDED_ENV_PREFIXES)]:
        del os.environ[name]  # a warm container's previous call
    os.environ.update({k: v for k, v in call.get("flags", {}).items()
                       if k.startswith(FORWARDED_ENV_PREFIXES)})
    try:
        return serve(call, main, queue=pipes_queue, code_version=CODE_VERSION, app=TRAIN_APP)
    finally:
        volume.commit()  # checkpoints, metrics and hypotheses persist even when a run fails


@app.function(**GPU_FUNCTION)
def train(call: dict) -> dict:
    from eeg_assets.remote import train_entry

    # Each epoch's checkpoint reaches the volume before the next epoch starts: a preempted call
    # restarts on the same input and resumes from it.
    return _serve(call, lambda pipes: train_entry.main(pipes, after_epoch=volume.commit))


@app.function(**GPU_FUNCTION)
def evaluate(call: dict) -> dict:
    from eeg_assets.remote import evaluate_entry

    return _serve(call, evaluate_entry.main)


@app.function(cpu=0.25, timeout=120)
def ping(call: dict) -> dict:
    """The deployed code version (``python -m eeg_assets modal-check``)."""
    return {"code_version": CODE_VERSION, "python": sys.version.split()[0]}
