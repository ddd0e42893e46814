"""A stand-in for the ``modal`` CLI, for tests that cannot reach Modal.

``modal run <path>`` with the real CLI imports the app file here, calls its local entrypoint, and
runs the ``.remote()`` call in a GPU container, streaming the container's stdout back. This
stand-in does the same with the app's own code and no network:

* host side (``modal run <path> [--job NAME]``): checks that ``<path>`` is
  ``eeg_assets/remote/modal_app.py``, imports it as ``modal run`` does, swaps its GPU Functions
  (``train``, ``evaluate``) for ones whose ``.remote(...)`` starts the "container", and calls the
  local entrypoint's own function (``run``, with ``job`` when ``--job`` is given, as ``modal run``
  passes an entrypoint's parameters), so the env forwarding of ``modal_app.run`` is what gets
  tested;
* container side (``--container <path>``, a fresh process): an environment holding only what a
  Modal container has (PATH, HOME, locale; nothing else of the host's), the call's arguments from
  stdin, the app module imported again, its ``volume`` replaced by a folder, and the real body
  of the called function run through ``Function.local``. Its stdout is the stand-in's stdout, so
  Pipes messages reach the launcher exactly as ``modal run`` would stream them.

The Volume: ``EEG_ASSETS_STAND_IN_VOLUME`` names a host folder that plays the volume mounted at
``/results``. Paths under ``/results`` in the Pipes extras (the training request) are rewritten
to that folder before the entry point reads them, because ``/results`` does not exist here.
The written lists and metadata therefore name the folder, not ``/results``.
``volume.commit()`` appends a line to ``<folder>/.commits``; the original request is appended
to ``<folder>/.requests.jsonl`` so a test can check what the launcher asked for, and both
processes append their ids to ``<folder>/.pids``. SIGINT (Ctrl-C) stops the CLI and kills the
container, as it stops a real ``modal run`` and its app.

Test controls: ``EEG_ASSETS_STAND_IN_EXIT=N`` makes the CLI fail with code N before doing anything
(as ``modal run`` does without a token), printing ordinary (non-Pipes) output first.

Run it through a small executable named ``modal`` on PATH (tests write one that execs this file
with the test's Python).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

from dagster_pipes import decode_param, encode_param

EXPECTED_APP = Path(__file__).resolve().parents[1] / "eeg_assets" / "remote" / "modal_app.py"
VOLUME_ENV = "EEG_ASSETS_STAND_IN_VOLUME"
EXIT_ENV = "EEG_ASSETS_STAND_IN_EXIT"
CONTEXT_ENV = "DAGSTER_PIPES_CONTEXT"
#: Host variables a Modal container also has (its own values, but harmless to copy).
CONTAINER_BASE_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")


def _fail(message: str, code: int = 2) -> None:
    print(f"stand-in modal: {message}", file=sys.stderr)
    sys.exit(code)


def _import_app(path: Path):
    spec = importlib.util.spec_from_file_location("modal_app", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["modal_app"] = module
    spec.loader.exec_module(module)
    return module


def _record_pid() -> None:
    """Append this process's id to ``<volume>/.pids`` (tests check nothing is left running)."""
    with open(_volume_dir() / ".pids", "a") as f:
        f.write(f"{os.getpid()}\n")


def _volume_dir() -> Path:
    folder = os.environ.get(VOLUME_ENV)
    if not folder:
        _fail(f"{VOLUME_ENV} is not set (the host folder that plays the /results volume)")
    return Path(folder)


# --------------------------------------------------------------------------------------------
# Host side: `modal run <path>`
# --------------------------------------------------------------------------------------------

#: The app's GPU Functions, swapped for stand-ins.
GPU_FUNCTIONS = ("train", "evaluate")


class _RemoteFunction:
    """Replaces one of the app's GPU Functions: ``.remote(*args)`` runs it in a "container"."""

    def __init__(self, app_path: Path, name: str):
        self.app_path = app_path
        self.name = name

    def remote(self, *args, **kwargs):
        env = {k: os.environ[k] for k in CONTAINER_BASE_ENV if k in os.environ}
        env[VOLUME_ENV] = str(_volume_dir())  # the stand-in's own setting, not the app's
        process = subprocess.Popen([sys.executable, __file__, "--container", str(self.app_path),
                                    self.name], stdin=subprocess.PIPE, text=True, env=env)
        try:
            process.communicate(json.dumps({"args": args, "kwargs": kwargs}))
        except BaseException:  # Ctrl-C: the app stops, its container with it
            process.kill()
            process.wait()
            raise
        if process.returncode != 0:
            raise RuntimeError(f"remote function {self.name} failed (container exit code "
                               f"{process.returncode})")


def modal_run(app_path: str, entrypoint_args: list[str]) -> int:
    path = Path(app_path).resolve()
    if path != EXPECTED_APP:
        _fail(f"expected `modal run {EXPECTED_APP}`, got `modal run {app_path}`")
    exit_code = os.environ.get(EXIT_ENV)
    if exit_code:
        print("✓ Initialized.")
        print("Error: Token missing. Could not authenticate client.", file=sys.stderr)
        return int(exit_code)
    if entrypoint_args not in ([], ["--job", "train"], ["--job", "evaluate"]):
        _fail(f"the app's entrypoint takes only --job train|evaluate, got {entrypoint_args}")
    _record_pid()
    app = _import_app(path)
    for name in GPU_FUNCTIONS:
        setattr(app, name, _RemoteFunction(path, name))
    print("✓ Initialized. View run at https://modal.com/apps/stand-in")  # non-Pipes output
    try:
        app.run.info.raw_f(*entrypoint_args[1:])  # the local entrypoint's own body
    except RuntimeError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # subprocess.run has killed the container
        print("Stopping app - local entrypoint interrupted.", file=sys.stderr)
        return 130
    print("✓ App completed.")
    return 0


# --------------------------------------------------------------------------------------------
# Container side
# --------------------------------------------------------------------------------------------

class _FolderVolume:
    def __init__(self, folder: Path):
        self.folder = folder

    def commit(self) -> None:
        with open(self.folder / ".commits", "a") as f:
            f.write("commit\n")


def _remap(value, mount: str, folder: Path):
    if isinstance(value, str) and (value == mount or value.startswith(mount + "/")):
        return str(folder) + value[len(mount):]
    if isinstance(value, dict):
        return {k: _remap(v, mount, folder) for k, v in value.items()}
    if isinstance(value, list):
        return [_remap(v, mount, folder) for v in value]
    return value


def _remap_pipes_env(env: dict, mount: str, folder: Path) -> dict:
    """The forwarded Pipes env with ``mount`` paths of its extras pointing into ``folder``."""
    if CONTEXT_ENV not in env:
        return env
    params = decode_param(env[CONTEXT_ENV])
    extras = params["data"]["extras"]
    with open(folder / ".requests.jsonl", "a") as f:
        f.write(json.dumps(extras.get("request")) + "\n")
    params["data"]["extras"] = _remap(extras, mount, folder)
    return {**env, CONTEXT_ENV: encode_param(params)}


def container(app_path: str, function: str) -> int:
    call = json.loads(sys.stdin.read())
    folder = _volume_dir()
    _record_pid()
    app = _import_app(Path(app_path))
    app.volume = _FolderVolume(folder)
    args = list(call["args"])
    args[0] = _remap_pipes_env(args[0], app.RESULTS_MOUNT, folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "executing locally without the mounted Volume"
        getattr(app, function).local(*args, **call["kwargs"])
    return 0


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "run":
        return modal_run(argv[1], argv[2:])
    if len(argv) == 3 and argv[0] == "--container" and argv[2] in GPU_FUNCTIONS:
        return container(argv[1], argv[2])
    _fail(f"only `modal run <app file> [--job NAME]` is supported, got: {' '.join(argv)}")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
