"""Launching a Modal app from an asset: ``modal run`` with Dagster Pipes on its stdout.

Used by ``trained_model`` (the training app) and by the cache chain's Modal backend (the cache
app). The Pipes context travels in the environment of ``modal run``, which the app's local
entrypoint forwards to its remote function; messages come back as JSON lines on stdout, which
``modal run`` streams from the container.
"""

import json
import os
import sys
from contextlib import contextmanager

import dagster as dg

from eeg_assets.remote.modal_cli import ModalError, failure_message, stream


class StdoutMessageReader(dg.PipesMessageReader):
    """Pipes messages arrive as JSON lines on the launched command's stdout.

    ``modal run`` streams the remote container's stdout to the local process, so this is the one
    channel that reaches back from a Modal container without cloud storage.
    """

    handler = None
    #: A Pipes message arrived: the remote code started (Modal was reached).
    seen = False

    @contextmanager
    def read_messages(self, handler):
        self.handler = handler
        yield {"stdio": "stdout"}

    def consume(self, line: str) -> bool:
        """Hand a Pipes message to Dagster; False when the line is ordinary output."""
        try:
            message = json.loads(line)
        except ValueError:
            return False
        if not isinstance(message, dict) or "__dagster_pipes_version" not in message:
            return False
        self.seen = True
        self.handler.handle_message(message)
        return True

    def no_messages_debug_text(self) -> str:
        return "Expected Dagster Pipes messages as JSON lines on the stdout of `modal run`."


def run_with_pipes(context: dg.AssetExecutionContext, command: list[str], extras: dict,
                   env: dict[str, str] | None = None) -> dg.PipesClientCompletedInvocation:
    """Run ``command`` (a ``modal run``) as the external process of a Pipes session.

    ``env`` is added to this process's environment (the app's settings).

    Raises ``dg.Failure`` naming the command and its exit code, and saying so when Modal could
    not be reached (no Pipes message ever arrived).
    """
    reader = StdoutMessageReader()
    context.log.info(f"launching {' '.join(command)}")
    with dg.open_pipes_session(context=context, extras=extras, message_reader=reader,
                               context_injector=dg.PipesEnvContextInjector()) as session:

        def on_line(line: str) -> None:
            if not reader.consume(line.strip()):
                sys.stdout.write(line)

        try:
            returncode, tail = stream(command, on_line,
                                      env={**os.environ, **(env or {}),
                                           **session.get_bootstrap_env_vars()})
        except ModalError as exc:
            raise dg.Failure(str(exc)) from None
        if returncode != 0:
            raise dg.Failure(failure_message(command, returncode, tail, started=reader.seen))
    return dg.PipesClientCompletedInvocation(session)
