"""A stand-in for the ``modal`` CLI, for tests that cannot reach Modal.

It plays the parts of Modal that the project's two apps use, with the apps' own code and no
network; the cache app's part is in ``stand_in_cache_app.py`` (its docstring says what it plays),
the volumes are folders (``stand_in_volumes.py``). This file is the CLI and the training app.

``modal run <path>`` with the real CLI imports the app file here, calls its local entrypoint, and
runs the ``.remote()`` call in a GPU container, streaming the container's stdout back. For the
training app (``eeg_assets/remote/modal_app.py``) this stand-in does the same:

* host side (``modal run <path> [--job NAME]``): imports the app as ``modal run`` does, swaps its
  GPU Functions (``train``, ``evaluate``) for ones whose ``.remote(...)`` starts the "container",
  and calls the local entrypoint's own function (``run``, with ``job`` when ``--job`` is given,
  as ``modal run`` passes an entrypoint's parameters), so the env forwarding of
  ``modal_app.run`` is what gets tested;
* container side (``--container <path>``, a fresh process): an environment holding only what a
  Modal container has (PATH, HOME, locale; nothing else of the host's), the call's arguments from
  stdin, the app module imported again, its ``volume`` replaced by a folder, and the real body
  of the called function run through ``Function.local``. Its stdout is the stand-in's stdout, so
  Pipes messages reach the launcher exactly as ``modal run`` would stream them.

The training app's Volume: ``EEG_ASSETS_STAND_IN_VOLUME`` names a host folder that plays the
volume mounted at ``/results`` (the cache app's results volume is the same folder). Paths under
``/results`` in the Pipes extras (the training request) are rewritten to that folder before the
entry point reads them, because ``/results`` does not exist here. ``volume.commit()`` appends a
line to ``<folder>/.commits``; the original request is appended to ``<folder>/.requests.jsonl``
so a test can check what the launcher asked for, and both processes append their ids to
``<folder>/.pids``. SIGINT (Ctrl-C) stops the CLI and kills the container, as it stops a real
``modal run`` and its app. The written lists and metadata name the folder, not ``/results``.

Test controls: ``EEG_ASSETS_STAND_IN_EXIT=N`` makes the CLI fail with code N before doing anything
(as ``modal run`` does without a token), printing ordinary (non-Pipes) output first.

Run it through a small executable named ``modal`` on PATH (tests write one that execs this file
with the test's Python).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

from dagster_pipes import decode_param, encode_param

import stand_in_cache_app
from stand_in_cache_app import CONTAINER_BASE_ENV, StandInError, import_app

REMOTE = Path(__file__).resolve().parents[1] / "eeg_assets" / "remote"
EXPECTED_APP = REMOTE / "modal_app.py"
CACHE_APP = REMOTE / "modal_cache.py"
VOLUME_ENV = "EEG_ASSETS_STAND_IN_VOLUME"
EXIT_ENV = "EEG_ASSETS_STAND_IN_EXIT"
CONTEXT_ENV = "DAGSTER_PIPES_CONTEXT"


def _fail(message: str, code: int = 2) -> None:
    print(f"stand-in modal: {message}", file=sys.stderr)
    sys.exit(code)


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


def modal_run(target: str, options: list[str]) -> int:
    app_path, _, entrypoint = target.partition("::")
    path = Path(app_path).resolve()
    if path not in (EXPECTED_APP, CACHE_APP):
        _fail(f"expected `modal run {EXPECTED_APP}` or `{CACHE_APP}::<entrypoint>`, got "
              f"`modal run {target}`")
    if len(options) % 2 or not all(o.startswith("--") for o in options[::2]):
        _fail(f"options must be `--name value` pairs, got: {' '.join(options)}")
    exit_code = os.environ.get(EXIT_ENV)
    if exit_code:
        print("✓ Initialized.")
        print("Error: Token missing. Could not authenticate client.", file=sys.stderr)
        return int(exit_code)
    if path == CACHE_APP:
        if not entrypoint:  # the real CLI: an app with several entrypoints needs one named
            _fail(f"{CACHE_APP} has more than one local entrypoint: name one with ::<name>")
        try:
            return stand_in_cache_app.host_run(path, entrypoint,
                                               dict(zip((o[2:] for o in options[::2]),
                                                        options[1::2])))
        except StandInError as exc:
            _fail(str(exc))
    if entrypoint not in ("", "run") or options not in ([], ["--job", "train"],
                                                         ["--job", "evaluate"]):
        _fail(f"{EXPECTED_APP} has one local entrypoint, `run`, taking only --job train|evaluate, "
              f"got {target} {' '.join(options)}")
    _record_pid()
    app = import_app(path)
    for name in GPU_FUNCTIONS:
        setattr(app, name, _RemoteFunction(path, name))
    print("✓ Initialized. View run at https://modal.com/apps/stand-in")  # non-Pipes output
    try:
        app.run.info.raw_f(*options[1:])  # the local entrypoint's own body
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
    app = import_app(Path(app_path))
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
    if len(argv) == 3 and argv[0] == "--container" and Path(argv[1]).resolve() == CACHE_APP:
        return stand_in_cache_app.container(Path(argv[1]), argv[2])
    if len(argv) == 3 and argv[0] == "--container" and argv[2] in GPU_FUNCTIONS:
        return container(argv[1], argv[2])
    _fail(f"only `modal run <app file>[::<entrypoint>] [--option value ...]` is supported, got: "
          f"{' '.join(argv)}")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
