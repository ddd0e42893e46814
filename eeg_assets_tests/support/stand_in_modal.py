"""A stand-in for Modal's servers, for tests that cannot reach them.

:class:`StandInModal` has the methods of :class:`eeg_assets.remote.modal_client.ModalClient`
(``EEG_ASSETS_MODAL_CLIENT=eeg_assets_tests.support.stand_in_modal:StandInModal``); behind them, the project's two apps
run with their own code, imported with the real ``modal`` package, each container a separate
process. What it plays, including the inconvenient parts of the real service:

* **Spawned calls outlive the caller.** ``spawn`` starts a detached supervisor (its own session:
  killing the Dagster process does not stop it) that runs the function in a container process and
  writes the return value under the server folder; ``result`` polls for it, ``cancel`` kills the
  supervisor's whole process group. Arguments and results travel as JSON (the apps pass plain
  data).
* **Containers.** A container has only a container's environment (PATH, HOME, locale), the app
  imported afresh, its volumes replaced by its own :class:`~stand_in_volumes.Mount` of each volume
  folder and its Queue and Dict by folder-backed ones, and the real function body run through
  ``Function.local``. ``build_batch.map`` starts one container per input (at most
  ``EEG_ASSETS_STAND_IN_CONTAINERS`` at a time, default 2).
* **Volumes as Modal documents them, and as it does not promise.** Writes stay private until a
  commit; ``commit()`` does not reload; a background thread commits at arbitrary moments
  (``EEG_ASSETS_STAND_IN_BACKGROUND_COMMIT_S``, default 0.2 s); committed files get the commit's
  time, uploaded files the upload's, and every mount of the raw volume shows its files with the
  time of the mount: no mtime survives.
* **Preemption.** ``EEG_ASSETS_STAND_IN_PREEMPT=<function>`` kills that function's first container
  right after its first commit (SIGKILL, nothing else committed) and runs the same input again,
  as Modal restarts a preempted input.
* **The log stream.** A container's stdout and stderr become the call's log
  (``<server>/calls/<id>.log``) as ``modal run`` prints them: colour codes when ``FORCE_COLOR``
  or ``TTY_COMPATIBLE`` is set, unfinished lines flushed at arbitrary points with other output
  between the pieces, and the last lines cut (``EEG_ASSETS_STAND_IN_LOG_TAIL_CUT``, default 5).
  Nothing the project needs may travel there.
* **The client's side.** ``EEG_ASSETS_STAND_IN_DISCONNECTED=1`` plays a client that lost Modal
  (``result`` and ``drain`` fail while the call runs on); ``EEG_ASSETS_STAND_IN_INTERRUPT=1``
  a Ctrl-C or a terminated run arriving while the caller waits.
* **Deployment.** ``EEG_ASSETS_STAND_IN_DEPLOYED_VERSION`` replaces the apps' code version, as an
  app deployed from other code would have.

Folders: ``EEG_ASSETS_STAND_IN_RAW_VOLUME`` and ``EEG_ASSETS_STAND_IN_VOLUME`` hold the committed
state of the raw and results volumes; ``EEG_ASSETS_STAND_IN_SERVER`` (default: beside the results
volume) holds calls, queues and dicts. ``EEG_ASSETS_STAND_IN_NO_TOKEN=1`` plays a machine without
a Modal token.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from pathlib import Path

from dagster_pipes import decode_param, encode_param

if __package__ in (None, ""):  # run as its own supervisor or container script: the repository
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # holds eeg_assets_tests
from eeg_assets_tests.support.stand_in_volumes import HostVolume, Mount  # noqa: E402

HERE = Path(__file__).resolve()
REMOTE = HERE.parents[2] / "eeg_assets" / "remote"
APPS = {"eeg-assets-train": REMOTE / "modal_app.py", "eeg-assets-cache": REMOTE / "modal_cache.py"}
RAW_VOLUME_ENV = "EEG_ASSETS_STAND_IN_RAW_VOLUME"
RESULTS_VOLUME_ENV = "EEG_ASSETS_STAND_IN_VOLUME"
SERVER_ENV = "EEG_ASSETS_STAND_IN_SERVER"
CONTAINERS_ENV = "EEG_ASSETS_STAND_IN_CONTAINERS"
PREEMPT_ENV = "EEG_ASSETS_STAND_IN_PREEMPT"
BACKGROUND_COMMIT_ENV = "EEG_ASSETS_STAND_IN_BACKGROUND_COMMIT_S"
LOG_CUT_ENV = "EEG_ASSETS_STAND_IN_LOG_TAIL_CUT"
DEPLOYED_ENV = "EEG_ASSETS_STAND_IN_DEPLOYED_VERSION"
NO_TOKEN_ENV = "EEG_ASSETS_STAND_IN_NO_TOKEN"
IMAGE_ENV = "EEG_ASSETS_STAND_IN_IMAGE_ENV"
DISCONNECTED_ENV = "EEG_ASSETS_STAND_IN_DISCONNECTED"
INTERRUPT_ENV = "EEG_ASSETS_STAND_IN_INTERRUPT"
#: Host variables a container also has, and the ones that tell OpenBLAS which CPU this is (a
#: container on the same hardware detects the same kernels; float32 products depend on them).
CONTAINER_BASE_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "OPENBLAS_CORETYPE",
                      "OPENBLAS_L2_SIZE", "PYTHONPATH")
STAND_IN_ENV = (RAW_VOLUME_ENV, RESULTS_VOLUME_ENV, SERVER_ENV, CONTAINERS_ENV, PREEMPT_ENV,
                BACKGROUND_COMMIT_ENV, LOG_CUT_ENV, DEPLOYED_ENV, IMAGE_ENV, "FORCE_COLOR",
                "TTY_COMPATIBLE")
PREEMPTED_EXIT = (-signal.SIGKILL, 128 + signal.SIGKILL)


def _folder(variable: str) -> Path:
    folder = os.environ.get(variable)
    if not folder:
        raise RuntimeError(f"stand-in modal: {variable} is not set (the folder that plays it)")
    return Path(folder)


def server_dir() -> Path:
    folder = os.environ.get(SERVER_ENV) or f"{_folder(RESULTS_VOLUME_ENV)}.server"
    Path(folder).mkdir(parents=True, exist_ok=True)
    return Path(folder)


def _write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as out:
        json.dump(value, out)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# Queue and Dict, shared by every process through the server folder
# --------------------------------------------------------------------------------------------

class FolderQueue:
    """``modal.Queue`` with partitions: one file per item, taken by an atomic rename."""

    def __init__(self, root: Path):
        self.root = root

    def _partition(self, partition: str | None) -> Path:
        return self.root / hashlib.sha256(str(partition).encode()).hexdigest()[:24]

    def put(self, value, *, partition: str | None = None, **_) -> None:
        payload = json.dumps(value)
        if len(payload) > 1 << 20:
            raise ValueError("Queue item larger than 1 MiB")  # as Modal's limit
        name = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:6]}.json"
        _write_json(self._partition(partition) / name, value)

    def get_many(self, n_values: int, block: bool = True, timeout=None, *,
                 partition: str | None = None) -> list:
        folder, items = self._partition(partition), []
        names = sorted(p.name for p in folder.glob("*.json")) if folder.is_dir() else []
        for name in names[:n_values]:
            taken = folder / f".taken.{name}"
            try:
                os.rename(folder / name, taken)
            except FileNotFoundError:
                continue
            items.append(json.loads(taken.read_text()))
            taken.unlink()
        return items


class FolderDict:
    """``modal.Dict``: ``put(..., skip_if_exists=True)`` is an atomic create."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key) -> Path:
        return self.root / hashlib.sha256(json.dumps(key).encode()).hexdigest()[:24]

    def put(self, key, value, *, skip_if_exists: bool = False) -> bool:
        path = self._path(key)
        if not skip_if_exists:
            _write_json(path, value)
            return True
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as out:
            json.dump(value, out)
        return True

    def get(self, key, default=None):
        try:
            return json.loads(self._path(key).read_text())
        except (FileNotFoundError, ValueError):
            return default

    def pop(self, key, default=None):
        value = self.get(key, default)
        self._path(key).unlink(missing_ok=True)
        return value


# --------------------------------------------------------------------------------------------
# The client: what the Dagster process calls
# --------------------------------------------------------------------------------------------

class StandInModal:
    """:class:`eeg_assets.remote.modal_client.ModalClient`, played by local processes."""

    def __init__(self, settings=None, server: Path | None = None):
        self.settings = settings
        self.server = Path(server) if server is not None else server_dir()

    def token_source(self) -> str | None:
        return None if os.environ.get(NO_TOKEN_ENV) else "stand-in"

    def _check_token(self) -> None:
        from eeg_assets.remote.modal_client import TOKEN_HELP, ModalUnavailable

        if self.token_source() is None:
            raise ModalUnavailable(f"no Modal token: {TOKEN_HELP}")

    def spawn(self, app: str, function: str, call: dict) -> str:
        self._check_token()
        if app not in APPS:
            from eeg_assets.remote.modal_client import ModalUnavailable

            raise ModalUnavailable(f"the app {app} is not deployed")
        call_id = f"fc-{uuid.uuid4().hex[:20]}"
        record = self.server / "calls" / f"{call_id}.json"
        _write_json(record, {"app": app, "function": function, "call": call})
        env = {k: os.environ[k] for k in CONTAINER_BASE_ENV + STAND_IN_ENV if k in os.environ}
        env[SERVER_ENV] = str(self.server)
        # The settings the apps were deployed with: `Image.env` bakes them into the image.
        env[IMAGE_ENV] = json.dumps(self.settings.to_env() if self.settings is not None else {})
        supervisor = subprocess.Popen([sys.executable, str(HERE), "--serve", call_id], env=env,
                                      start_new_session=True, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _write_json(record.with_suffix(".pid"), supervisor.pid)
        return call_id

    def _connected(self) -> None:
        from eeg_assets.remote.modal_client import ModalUnavailable

        if os.environ.get(DISCONNECTED_ENV):
            raise ModalUnavailable("Modal could not be reached (stand-in: connection lost)")

    def result(self, call_id: str, timeout_s: float):
        from eeg_assets.remote.modal_client import CallFailed

        self._connected()
        path = self.server / "calls" / f"{call_id}.result"
        deadline = time.monotonic() + timeout_s
        while True:
            if path.is_file():
                value = json.loads(path.read_text())
                if isinstance(value, dict) and "__error__" in value:
                    raise CallFailed(value["__error__"])
                return value
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    def cancel(self, call_id: str) -> None:
        calls = self.server / "calls"
        try:
            pid = json.loads((calls / f"{call_id}.pid").read_text())
            os.killpg(pid, signal.SIGKILL)
        except (FileNotFoundError, ProcessLookupError):
            pass
        if not (calls / f"{call_id}.result").exists():
            _write_json(calls / f"{call_id}.result", {"__error__": "cancelled"})
        (calls / f"{call_id}.cancelled").touch()

    def drain(self, partition: str) -> list[dict]:
        self._connected()
        if os.environ.get(INTERRUPT_ENV):
            raise KeyboardInterrupt  # Ctrl-C, or the run terminated, while the call runs
        return FolderQueue(self.server / "queues").get_many(1000, block=False,
                                                            partition=partition)

    def raw_volume(self):
        self._check_token()
        return HostVolume(_folder(RAW_VOLUME_ENV))

    def volume_version(self, name: str) -> str:
        return "version 2"

    # For tests -----------------------------------------------------------------------------

    def calls(self) -> list[dict]:
        """Every call spawned so far, oldest first."""
        folder = self.server / "calls"
        records = sorted(folder.glob("fc-*.json"), key=lambda p: p.stat().st_mtime_ns)
        return [{"id": p.stem, **json.loads(p.read_text())} for p in records]


# --------------------------------------------------------------------------------------------
# The server side: a supervisor per call, containers under it
# --------------------------------------------------------------------------------------------

def import_app(path: Path):
    spec = importlib.util.spec_from_file_location("modal_app_under_test", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["modal_app_under_test"] = module
    spec.loader.exec_module(module)
    return module


def container_env(**extra: str) -> dict[str, str]:
    env = {k: os.environ[k] for k in CONTAINER_BASE_ENV + STAND_IN_ENV if k in os.environ}
    env.update(json.loads(os.environ.get(IMAGE_ENV) or "{}"))
    env.update(extra)
    return env


class LogStream:
    """A call's log as ``modal run`` shows it: merged by descriptor, not by container; an
    unfinished line flushed at a poll's end; colour codes under FORCE_COLOR; the tail cut."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()
        self.colour = bool(os.environ.get("FORCE_COLOR") or os.environ.get("TTY_COMPATIBLE"))
        self.rng = random.Random(path.name)

    def pump(self, stream) -> threading.Thread:
        def run():
            for line in iter(stream.readline, ""):
                pieces = [line]
                if len(line) > 8 and self.rng.random() < 0.5:  # a poll ended mid-line
                    cut = self.rng.randrange(1, len(line) - 1)
                    pieces = [line[:cut], line[cut:]]
                for piece in pieces:
                    with self.lock, open(self.path, "a") as out:
                        out.write(f"\x1b[34m{piece}\x1b[0m" if self.colour else piece)
            stream.close()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def cut_tail(self) -> None:
        lines = self.path.read_text().splitlines(keepends=True) if self.path.exists() else []
        keep = max(0, len(lines) - int(os.environ.get(LOG_CUT_ENV) or 5))
        self.path.write_text("".join(lines[:keep])
                             + "Timed out waiting for final app logs.\n")


def _start_container(app_path: Path, function: str, call: dict, log: LogStream,
                     **env: str) -> tuple[subprocess.Popen, Path, list[threading.Thread]]:
    fd, result = tempfile.mkstemp(prefix="stand-in-result.", suffix=".json")
    os.close(fd)
    process = subprocess.Popen([sys.executable, str(HERE), "--container", str(app_path), function],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               env=container_env(STAND_IN_RESULT=result, **env))
    process.stdin.write(json.dumps(call))
    process.stdin.close()
    return process, Path(result), [log.pump(process.stdout), log.pump(process.stderr)]


def _outcome(process: subprocess.Popen, result: Path, function: str):
    try:
        if process.returncode != 0:
            return RuntimeError(f"remote function {function} failed (container exit code "
                                f"{process.returncode})")
        return json.loads(result.read_text())
    finally:
        result.unlink(missing_ok=True)


def serve(call_id: str) -> int:
    """The supervisor of one spawned call: run it, run it again once if preempted."""
    calls = server_dir() / "calls"
    record = json.loads((calls / f"{call_id}.json").read_text())
    app_path, function = APPS[record["app"]], record["function"]
    log = LogStream(calls / f"{call_id}.log")
    preempt = os.environ.get(PREEMPT_ENV) == function
    attempts = 0
    while True:
        attempts += 1
        marker = calls / f"{call_id}.preempt" if preempt and attempts == 1 else None
        process, result, pumps = _start_container(
            app_path, function, {"args": [record["call"]], "kwargs": {}}, log,
            **({"STAND_IN_PREEMPT_MARKER": str(marker)} if marker else {}))
        process.wait()
        for pump in pumps:
            pump.join()
        if process.returncode in PREEMPTED_EXIT and marker is not None and marker.exists():
            result.unlink(missing_ok=True)
            continue  # Modal reschedules a preempted input
        outcome = _outcome(process, result, function)
        break
    log.cut_tail()
    if isinstance(outcome, BaseException):
        outcome = {"__error__": str(outcome)}
    _write_json(calls / f"{call_id}.attempts", attempts)
    _write_json(calls / f"{call_id}.result", outcome)
    return 0


class MapFunction:
    """``Function.map`` inside a container: each input in a container of its own."""

    def __init__(self, app_path: Path, name: str):
        self.app_path, self.name = app_path, name

    def map(self, *inputs, kwargs=None, order_outputs=True, return_exceptions=False):
        calls = [{"args": list(args), "kwargs": kwargs or {}} for args in zip(*inputs)]
        limit = int(os.environ.get(CONTAINERS_ENV) or 2)
        log = LogStream(Path(tempfile.gettempdir()) / f"stand-in-map-{os.getpid()}.log")
        waiting, running, finished, given = list(enumerate(calls)), {}, {}, 0
        while waiting or running or finished:
            while waiting and len(running) < limit:
                index, call = waiting.pop(0)
                running[index] = _start_container(self.app_path, self.name, call, log)
            for index in [i for i, (p, _, _) in running.items() if p.poll() is not None]:
                process, result, pumps = running.pop(index)
                for pump in pumps:
                    pump.join()
                finished[index] = _outcome(process, result, self.name)
            ready = ([given] if given in finished else []) if order_outputs else sorted(finished)
            if not ready:
                time.sleep(0.02)
                continue
            for index in ready:
                outcome = finished.pop(index)
                if isinstance(outcome, BaseException) and not return_exceptions:
                    raise outcome
                given += 1
                yield outcome
        log.path.unlink(missing_ok=True)


class ContainerVolume:
    """A container's mount of a volume, with Modal's background commits and the preemption
    switch."""

    def __init__(self, mount: Mount):
        self.mount = mount
        self.lock = threading.RLock()
        self.stop = threading.Event()
        interval = float(os.environ.get(BACKGROUND_COMMIT_ENV) or 0.2)
        if interval > 0:
            threading.Thread(target=self._background, args=(interval,), daemon=True).start()

    def _background(self, interval: float) -> None:
        rng = random.Random(os.getpid())
        while not self.stop.wait(interval * (0.5 + rng.random())):
            with self.lock:
                try:
                    self.mount.commit()
                except (OSError, RuntimeError):
                    pass  # files moving under it: the next one catches up

    def commit(self) -> None:
        with self.lock:
            self.mount.commit()
        marker = os.environ.get("STAND_IN_PREEMPT_MARKER")
        if marker and not Path(marker).exists():
            Path(marker).touch()
            os.kill(os.getpid(), signal.SIGKILL)  # preempted right after this commit

    def reload(self) -> None:
        with self.lock:
            self.mount.reload()

    def close(self) -> None:
        self.stop.set()
        with self.lock:
            self.mount.commit()  # Modal commits at shutdown
            self.mount.unmount()


def _remap(value, old: str, new: str):
    if isinstance(value, str) and (value == old or value.startswith(old + "/")):
        return new + value[len(old):]
    if isinstance(value, dict):
        return {k: _remap(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_remap(v, old, new) for v in value]
    return value


def _remap_call(call: dict, mount: str, folder: Path) -> dict:
    """The Pipes extras' ``mount`` paths pointed into this container's ``folder`` (``/results``
    does not exist here)."""
    env = call.get("pipes_env") or {}
    if "DAGSTER_PIPES_CONTEXT" not in env:
        return call
    params = decode_param(env["DAGSTER_PIPES_CONTEXT"])
    params["data"]["extras"] = _remap(params["data"]["extras"], mount, str(folder))
    return {**call, "pipes_env": {**env, "DAGSTER_PIPES_CONTEXT": encode_param(params)}}


def container(app_path: Path, function_name: str) -> int:
    invocation = json.loads(sys.stdin.read())
    raw = ContainerVolume(Mount.for_process(_folder(RAW_VOLUME_ENV), restamp=True).mount())
    results = ContainerVolume(Mount.for_process(_folder(RESULTS_VOLUME_ENV)).mount())
    server = server_dir()
    try:
        app = import_app(app_path)
        function = getattr(app, function_name)
        deployed = os.environ.get(DEPLOYED_ENV)
        if deployed:
            app.CODE_VERSION = deployed
        mount_names = {"RESULTS_MOUNT": results.mount.path}
        if hasattr(app, "RAW_MOUNT"):
            mount_names["RAW_MOUNT"] = raw.mount.path
        real_results = app.RESULTS_MOUNT
        for name, path in mount_names.items():
            setattr(app, name, str(path))
        for name in ("results_volume", "volume"):
            if hasattr(app, name):
                setattr(app, name, results)
        if hasattr(app, "raw_volume"):
            app.raw_volume = raw
        app.pipes_queue = FolderQueue(server / "queues")
        if hasattr(app, "leases"):
            app.leases = FolderDict(server / "dicts" / "leases")
        if hasattr(app, "build_batch"):
            app.build_batch = MapFunction(app_path, "build_batch")
        args = list(invocation["args"])
        if args and isinstance(args[0], dict):
            args[0] = _remap_call(args[0], real_results, results.mount.path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "executing locally without the mounted Volume"
            value = function.local(*args, **invocation["kwargs"])
        # what the caller reads names the volume's paths, as on Modal
        value = json.loads(json.dumps(value).replace(str(results.mount.path), real_results))
        Path(os.environ["STAND_IN_RESULT"]).write_text(json.dumps(value))
    finally:
        raw.close()
        results.close()
    return 0


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--serve":
        return serve(argv[1])
    if len(argv) == 3 and argv[0] == "--container":
        return container(Path(argv[1]), argv[2])
    print(f"stand-in modal: unknown arguments {argv}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
