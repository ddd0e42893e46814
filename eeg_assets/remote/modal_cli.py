"""Running the ``modal`` CLI: commands for the two apps, streamed output, clear failures.

No Dagster here: the ``upload-raw`` command of :mod:`eeg_assets.cli` uses it as it is, and
:mod:`eeg_assets.orchestration.modal_launch` adds Dagster Pipes on top.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path

CACHE_APP = Path(__file__).resolve().with_name("modal_cache.py")
#: What ``modal run`` prints when it cannot start an app, in words a user can act on.
UNREACHABLE = ("Modal could not be reached or did not start the app: no token (run `modal token "
               "new`, or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET), no network, or an image "
               "that did not build")
UPLOAD_MARK = "[upload-raw]"


class ModalError(RuntimeError):
    """``modal`` did not do what was asked; the message says why and what to do."""


def app_command(executable: str, app_file: Path, entrypoint: str | None = None,
                **options: str) -> list[str]:
    """``modal run <app>[::<entrypoint>] --<option> <value>...`` (underscores become dashes)."""
    target = f"{app_file}::{entrypoint}" if entrypoint else str(app_file)
    flags = [part for name, value in options.items()
             for part in (f"--{name.replace('_', '-')}", str(value))]
    return [executable, "run", target, *flags]


def stream(command: list[str], on_line: Callable[[str], None], env: dict | None = None,
           ) -> tuple[int, list[str]]:
    """Run ``command``, hand each stdout line to ``on_line``, pass stderr through.

    Returns the exit code and the last lines of stderr. If ``on_line`` raises (the step failed,
    the run was terminated), the command is interrupted first: SIGINT is Ctrl-C, on which
    ``modal run`` stops its app, so no container keeps working for nobody.
    """
    try:
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, bufsize=1)
    except FileNotFoundError:
        raise ModalError(f"{command[0]!r} not found: pip install 'eeg_assets[modal]' and run "
                         "`modal token new`") from None
    tail: deque[str] = deque(maxlen=20)
    pump = threading.Thread(target=_pass_through, args=(process.stderr, tail), daemon=True)
    pump.start()
    try:
        for line in process.stdout:
            on_line(line)
        process.wait()
    finally:
        _stop(process)
        process.stdout.close()
        pump.join()
    return process.returncode, list(tail)


def _pass_through(stderr, tail: deque) -> None:
    for line in stderr:
        sys.stderr.write(line)
        tail.append(line.rstrip())
    stderr.close()


def _stop(process: subprocess.Popen, timeout_s: float = 60) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def failure_message(command: list[str], returncode: int, stderr_tail: list[str],
                    started: bool) -> str:
    """Why a ``modal run`` failed; ``started``: the app's own code had begun to report."""
    message = f"`{' '.join(command)}` exited with code {returncode}"
    if not started:
        message += f" before the remote step started: {UNREACHABLE}"
    shown = [line for line in stderr_tail if line.strip()][-5:]
    if shown:
        message += ". Its last output: " + " | ".join(shown)
    return message


def upload_raw(executable: str, raw_root: Path, folders: list[str],
               log: Callable[[str], None] = print, env: dict[str, str] | None = None) -> None:
    """Mirror ``raw_root/<folder>`` onto the raw volume (``modal_cache.py::upload_raw``).

    ``env`` is added to this process's environment for ``modal run`` (the app's settings).

    Raises
    ------
    ModalError
        ``modal`` is missing, Modal could not be reached, or the upload failed.
    """
    command = app_command(executable, CACHE_APP, "upload_raw", raw_root=str(raw_root),
                          folders=",".join(folders))
    started = False

    def on_line(line: str) -> None:
        nonlocal started
        started = started or line.startswith(UPLOAD_MARK)
        log(line.rstrip("\n"))

    returncode, tail = stream(command, on_line, env={**os.environ, **(env or {})})
    if returncode != 0:
        raise ModalError(failure_message(command, returncode, tail, started))
