"""The stand-in ``modal`` CLI's part for the cache app, ``eeg_assets/remote/modal_cache.py``.

What the real CLI and Modal do, done here with the app's own code and no network:

* ``modal run modal_cache.py::upload_raw --raw-root DIR --folders a,b`` imports the app, gives it
  a :class:`~stand_in_volumes.HostVolume` for its raw volume and calls the local entrypoint's own
  function with the options (``--raw-root`` -> ``raw_root``), on this machine, as Modal does.
* ``modal run modal_cache.py::run_step`` (or ``::run_check``) calls that entrypoint, whose
  ``coordinate.remote(...)`` starts a "container": a new process with only a container's
  environment, the app imported afresh, its mount paths and volumes replaced by that process's
  own :class:`~stand_in_volumes.Mount` of each volume folder, and the real function body run with
  ``Function.local``. Its stdout is the CLI's stdout, as ``modal run`` streams it.
* In a container, ``build_batch.map(...)`` starts one such container per input (at most
  ``EEG_ASSETS_STAND_IN_CONTAINERS`` at a time, default 2) and yields their return values, in
  order or as they finish, with exceptions returned or raised as Modal's ``map`` does. Arguments
  and results travel as JSON (stricter than Modal's pickling: the apps pass plain data).

Volumes: ``EEG_ASSETS_STAND_IN_RAW_VOLUME`` and ``EEG_ASSETS_STAND_IN_VOLUME`` name the folders
holding the committed state of the raw and results volumes.

Test control: ``EEG_ASSETS_STAND_IN_KILL_MAP_AFTER=N`` crashes the fan-out when the coordinating
container asks ``map`` for result N+1: the build containers still running are killed (SIGKILL)
and what they had written is committed, as one of Modal's background commits could have done
just before; then the coordinating container commits what it had written and kills itself.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from stand_in_volumes import HostVolume, Mount

STAND_IN = Path(__file__).resolve().with_name("stand_in_modal.py")
RAW_VOLUME_ENV = "EEG_ASSETS_STAND_IN_RAW_VOLUME"
RESULTS_VOLUME_ENV = "EEG_ASSETS_STAND_IN_VOLUME"
KILL_ENV = "EEG_ASSETS_STAND_IN_KILL_MAP_AFTER"
CONTAINERS_ENV = "EEG_ASSETS_STAND_IN_CONTAINERS"
RESULT_ENV = "EEG_ASSETS_STAND_IN_RESULT"
#: Host variables a Modal container also has (its own values, but harmless to copy), and the
#: ones that tell OpenBLAS which CPU this is (this machine sets them): a container on the same
#: hardware would detect the same kernels, and float32 matrix products depend on the kernel.
CONTAINER_BASE_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "OPENBLAS_CORETYPE",
                      "OPENBLAS_L2_SIZE")
#: The stand-in's own settings, handed to the containers it starts.
STAND_IN_ENV = (RAW_VOLUME_ENV, RESULTS_VOLUME_ENV, KILL_ENV, CONTAINERS_ENV)


class StandInError(Exception):
    """The stand-in was called in a way the real ``modal`` would refuse."""


def import_app(path: Path):
    spec = importlib.util.spec_from_file_location("modal_app", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["modal_app"] = module
    spec.loader.exec_module(module)
    return module


def container_env(**extra: str) -> dict[str, str]:
    env = {k: os.environ[k] for k in CONTAINER_BASE_ENV + STAND_IN_ENV if k in os.environ}
    env.update(extra)
    return env


def _folder(variable: str) -> Path:
    folder = os.environ.get(variable)
    if not folder:
        raise StandInError(f"{variable} is not set (the folder that plays the volume)")
    return Path(folder)


def _start(app_path: Path, function: str, call: dict) -> tuple[subprocess.Popen, Path]:
    """A container running ``function`` on ``call``; its return value will be in the file."""
    fd, result = tempfile.mkstemp(prefix="stand-in-result.", suffix=".json")
    os.close(fd)
    process = subprocess.Popen([sys.executable, str(STAND_IN), "--container", str(app_path),
                                function], stdin=subprocess.PIPE, text=True,
                               env=container_env(**{RESULT_ENV: result}))
    process.stdin.write(json.dumps(call))
    process.stdin.close()
    return process, Path(result)


def _outcome(process: subprocess.Popen, result: Path, function: str):
    try:
        if process.returncode != 0:
            return RuntimeError(f"remote function {function} failed (container exit code "
                                f"{process.returncode})")
        return json.loads(result.read_text())
    finally:
        result.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# Host side
# --------------------------------------------------------------------------------------------

class RemoteFunction:
    """Replaces a Function on the host: ``.remote(*args)`` runs it in a container."""

    def __init__(self, app_path: Path, name: str):
        self.app_path, self.name = app_path, name

    def remote(self, *args, **kwargs):
        process, result = _start(self.app_path, self.name, {"args": args, "kwargs": kwargs})
        try:
            process.wait()
        except BaseException:  # Ctrl-C: the app stops, its containers with it
            process.kill()
            process.wait()
            result.unlink(missing_ok=True)
            raise
        outcome = _outcome(process, result, self.name)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def host_run(app_path: Path, entrypoint: str, options: dict[str, str]) -> int:
    app = import_app(app_path)
    if entrypoint == "upload_raw":
        app.raw_volume = HostVolume(_folder(RAW_VOLUME_ENV))
    elif entrypoint in ("run_step", "run_check"):
        app.coordinate = RemoteFunction(app_path, "coordinate")
    else:
        raise StandInError(f"no local entrypoint {entrypoint!r} in {app_path}")
    print("✓ Initialized. View run at https://modal.com/apps/stand-in")
    try:
        getattr(app, entrypoint).info.raw_f(
            **{name.replace("-", "_"): value for name, value in options.items()})
    except KeyboardInterrupt:
        print("Stopping app - local entrypoint interrupted.", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - as `modal run`: the error, exit code 1
        print(f"Error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print("✓ App completed.")
    return 0


# --------------------------------------------------------------------------------------------
# Container side
# --------------------------------------------------------------------------------------------

class MapFunction:
    """Replaces a Function in a container: ``.map(...)`` runs each input in a container."""

    def __init__(self, app_path: Path, name: str, own_mounts: list[Mount]):
        self.app_path, self.name, self.own_mounts = app_path, name, own_mounts

    def map(self, *inputs, kwargs=None, order_outputs=True, return_exceptions=False):
        calls = [{"args": list(args), "kwargs": kwargs or {}} for args in zip(*inputs)]
        limit = int(os.environ.get(CONTAINERS_ENV) or 2)
        kill_after = int(os.environ.get(KILL_ENV) or 0)
        waiting, running, finished = list(enumerate(calls)), {}, {}
        given = 0
        while waiting or running or finished:
            while waiting and len(running) < limit:
                index, call = waiting.pop(0)
                running[index] = _start(self.app_path, self.name, call)
            for index in [i for i, (process, _) in running.items() if process.poll() is not None]:
                process, result = running.pop(index)
                finished[index] = _outcome(process, result, self.name)
            ready = ([min(finished)] if finished and min(finished) == given else []) \
                if order_outputs else sorted(finished)
            if not ready:
                time.sleep(0.02)
                continue
            for index in ready:
                if kill_after and given >= kill_after:
                    self._crash(running)
                outcome = finished.pop(index)
                if isinstance(outcome, BaseException) and not return_exceptions:
                    raise outcome
                given += 1
                yield outcome

    def _crash(self, running: dict) -> None:
        for process, result in running.values():
            process.kill()
            process.wait()
            result.unlink(missing_ok=True)
            for variable in (RAW_VOLUME_ENV, RESULTS_VOLUME_ENV):
                mount = Mount.for_process(_folder(variable), process.pid)
                if mount.baseline_file.is_file():  # it had mounted: its last "background commit"
                    mount.commit()
                    mount.unmount()
        for mount in self.own_mounts:
            mount.commit()
        os.kill(os.getpid(), signal.SIGKILL)


def container(app_path: Path, function_name: str) -> int:
    call = json.loads(sys.stdin.read())
    raw = Mount.for_process(_folder(RAW_VOLUME_ENV)).mount()
    results = Mount.for_process(_folder(RESULTS_VOLUME_ENV)).mount()
    try:
        app = import_app(app_path)
        function = getattr(app, function_name)
        app.RAW_MOUNT, app.RESULTS_MOUNT = str(raw.path), str(results.path)
        app.raw_volume, app.results_volume = raw, results
        app.build_batch = MapFunction(app_path, "build_batch", [raw, results])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "executing locally without the mounted Volume"
            value = function.local(*call["args"], **call["kwargs"])
        Path(os.environ[RESULT_ENV]).write_text(json.dumps(value))
    finally:
        raw.unmount()
        results.unmount()
    return 0
